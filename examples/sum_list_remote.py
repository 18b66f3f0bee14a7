import raycompat as ray
import os
import time

ray.init()

@ray.remote
def sum_list(numbers):
    return sum(numbers)

start_time = time.time()
numbers = list(range(int(os.environ.get("RAYCOMPAT_SUM_LIST_SIZE", 100000000))))
result_id = sum_list.remote(numbers)
print(ray.get(result_id))
end_time = time.time()
print("Time taken: ", end_time - start_time)
