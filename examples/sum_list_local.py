import os
import time

def sum_list(numbers):
    return sum(numbers)

start_time = time.time()
numbers = list(range(int(os.environ.get("RAYCOMPAT_SUM_LIST_SIZE", 100000000))))
print(sum_list(numbers))
end_time = time.time()
print("Time taken: ", end_time - start_time)
