import raycompat as ray
ray.init()

@ray.remote
def hello_world():
    return "Hello, world!"
    
result_id = hello_world.remote()
print(ray.get(result_id))
