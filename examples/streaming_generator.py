import asyncio
import time

import raycompat as ray

ray.init()


# A generator task streams its results: each item is ready as soon as it is yielded.
@ray.remote
def slow_squares(n):
    for i in range(n):
        time.sleep(0.2)
        yield i * i


start = time.time()
gen = slow_squares.remote(5)
for ref in gen:
    print(f"got {ray.get(ref)} after {time.time() - start:.1f}s")


# ray.wait on a generator: ready once its next item is there.
gen = slow_squares.remote(3)
ready, _ = ray.wait([gen], timeout=0.05)
print("ready before the first yield:", ready == [])
ready, _ = ray.wait([gen])
print("next item:", ray.get(next(gen)))


# Actor methods can stream too; async generators work with `async for`.
@ray.remote
class Ticker:
    async def ticks(self, n):
        for i in range(n):
            await asyncio.sleep(0.05)
            yield f"tick {i}"


async def main():
    ticker = Ticker.remote()
    return [await ref async for ref in ticker.ticks.remote(3)]


print(asyncio.run(main()))
