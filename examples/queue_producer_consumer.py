import raycompat as ray
from raycompat.util.queue import Queue

ray.init()

NUM_ITEMS = 20
NUM_CONSUMERS = 3

# You can pass this object around to different tasks/actors
queue = Queue(maxsize=100)


@ray.remote
def producer(queue, n, num_consumers):
    for i in range(n):
        queue.put(i)
    for _ in range(num_consumers):
        queue.put(None)  # one "no more work" marker per consumer
    return n


@ray.remote
class Consumer:
    def __init__(self):
        self.done = []

    def run(self, queue):
        while True:
            item = queue.get(block=True)
            if item is None:
                return self.done
            self.done.append(item * item)


@ray.remote
def consumer_task(queue):
    done = []
    while (item := queue.get(block=True)) is not None:
        done.append(item * item)
    return done


consumers = [Consumer.remote() for _ in range(NUM_CONSUMERS - 1)]
results = [c.run.remote(queue) for c in consumers] + [consumer_task.remote(queue)]
print(f"Produced {ray.get(producer.remote(queue, NUM_ITEMS, NUM_CONSUMERS))} items")

squares = sorted(x for done in ray.get(results) for x in done)
print(f"Consumed {len(squares)} items by {NUM_CONSUMERS} consumers")
print(squares == [i * i for i in range(NUM_ITEMS)], sum(squares))
print(f"Queue empty: {queue.empty()}")
