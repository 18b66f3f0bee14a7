import raycompat as ray
from raycompat.dag import InputNode, MultiOutputNode

ray.init()


@ray.remote
def preprocess(x):
    return x * 2


@ray.remote
class Model:
    def __init__(self, weight):
        self.weight = weight

    def forward(self, x):
        return self.weight * x


@ray.remote
def combine(a, b):
    return a + b


# Build the DAG once: nothing runs until execute().
with InputNode() as inp:
    m1 = Model.bind(1)
    m2 = Model.bind(2)
    x = preprocess.bind(inp)  # shared by both models, runs once per execute
    out1 = m1.forward.bind(x)
    out2 = m2.forward.bind(x)
    dag = MultiOutputNode([out1, out2, combine.bind(out1, out2)])

# Run it on different inputs.
print(ray.get(dag.execute(1)))
# [2, 4, 6]
print(ray.get(dag.execute(5)))
# [10, 20, 30]

# Parts of the input: by position, keyword, key or attribute.
with InputNode() as dag_input:
    ray_dag = combine.bind(Model.bind(1).forward.bind(dag_input[0]), Model.bind(2).forward.bind(dag_input.x))
print(ray.get(ray_dag.execute(1, x=2)))
# 5
