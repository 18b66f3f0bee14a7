import os
import sys
import tempfile

import numpy as np

import raycompat as ray

# Ray Data's quickstart pattern: read, transform in batches, aggregate, write.
ray.init()

n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
ds = ray.data.range(n)


def add_features(batch):
    # batch is a dict of numpy arrays (Ray Data's default batch format)
    return {"group": batch["id"] % 10, "value": np.sqrt(batch["id"])}


class Scale:
    # A callable class runs on a pool of actors, each constructing it once.
    def __init__(self, factor):
        self.factor = factor

    def __call__(self, batch):
        batch["value"] = batch["value"] * self.factor
        return batch


ds = ds.map_batches(add_features).map_batches(Scale, fn_constructor_args=(2.0,), concurrency=2)
ds = ds.filter(lambda row: row["group"] != 0)

print(ds.schema())
print(ds.groupby("group").mean("value").sort("group").take(3))

out = os.path.join(tempfile.mkdtemp(), "features")
ds.write_parquet(out)
print(ray.data.read_parquet(out).count())
# 90000 rows for the default n: every group but 0
