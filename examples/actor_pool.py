import raycompat as ray
from raycompat.util import ActorPool

ray.init()


@ray.remote
class Actor:
    def double(self, n):
        return n * 2


a1, a2 = Actor.remote(), Actor.remote()
pool = ActorPool([a1, a2])

# pool.map(..) returns a Python generator object ActorPool.map
gen = pool.map(lambda a, v: a.double.remote(v), [1, 2, 3, 4])
print(list(gen))
# [2, 4, 6, 8]

# map_unordered yields each result as soon as its actor finishes
print(sorted(pool.map_unordered(lambda a, v: a.double.remote(v), [5, 6, 7, 8])))
# [10, 12, 14, 16]

# submit/get_next: hand out work one item at a time
pool.submit(lambda a, v: a.double.remote(v), 9)
pool.submit(lambda a, v: a.double.remote(v), 10)
print(pool.get_next(), pool.get_next())
# 18 20
