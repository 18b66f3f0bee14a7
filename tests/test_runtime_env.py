"""``runtime_env`` beyond ``env_vars``: ``working_dir``, ``py_modules``, ``pip``, and Ray's
errors for bad or unsupported values (Ray 2.60: local paths only at the job level)."""

import base64
import hashlib
import json
import os
import zipfile

import pytest

from conftest import run_script


def make_wheel(dest, name: str, body: str) -> str:
    """A pure-Python wheel written by hand: no build backend, no network."""
    version = "0.1"
    path = os.path.join(dest, f"{name}-{version}-py3-none-any.whl")
    info = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": body,
        f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        f"{info}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    with zipfile.ZipFile(path, "w") as zf:
        for arc, text in files.items():
            data = text.encode()
            zf.writestr(arc, data)
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arc},sha256={digest},{len(data)}")
        record.append(f"{info}/RECORD,,")
        zf.writestr(f"{info}/RECORD", "\n".join(record) + "\n")
    return path


def make_working_dir(root, module: str):
    """A working directory: a module, a data file, and files Ray does not upload."""
    wd = root / "wd"
    (wd / "big").mkdir(parents=True)
    (wd / ".git").mkdir()
    (wd / f"{module}.py").write_text("X = 42\n")
    (wd / "data.txt").write_text("hello\n")
    (wd / "ignored.txt").write_text("secret\n")
    (wd / ".gitignore").write_text("ignored.txt\n")
    (wd / "big" / "junk.bin").write_text("junk\n")
    (wd / ".git" / "HEAD").write_text("ref\n")
    return wd


def test_job_level_working_dir_py_modules_and_pip(tmp_path):
    wd = make_working_dir(tmp_path, "rtenv_job_mod")
    (tmp_path / "pm" / "rtenv_job_pkg").mkdir(parents=True)
    (tmp_path / "pm" / "rtenv_job_pkg" / "__init__.py").write_text("Y = 7\n")
    (tmp_path / "pm" / "rtenv_job_single.py").write_text("Z = 9\n")
    wheel = make_wheel(str(tmp_path), "rtenv_job_wheel", "VALUE = 'wheel'\n")
    env = {
        "working_dir": str(wd),
        "excludes": ["big/"],
        "py_modules": [str(tmp_path / "pm" / "rtenv_job_pkg"), str(tmp_path / "pm" / "rtenv_job_single.py")],
        "pip": [wheel],
    }
    proc = run_script(
        f"""
        import json, os
        engine = os.environ["RAYCOMPAT_TEST_ENGINE"]
        ray = __import__(engine)
        kw = {{"num_cpus": 1}}
        kw.update({{"include_dashboard": False}} if engine == "ray" else {{"dashboard_port": 0}})
        out = {{}}
        try:
            ray.init(runtime_env={{"working_dir": {str(tmp_path / "missing")!r}}}, **kw)
        except ValueError as e:
            out["missing"] = str(e)
        ray.shutdown()
        driver_cwd = os.getcwd()
        ray.init(runtime_env={env!r}, **kw)

        @ray.remote
        def probe():
            import rtenv_job_mod, rtenv_job_pkg, rtenv_job_single, rtenv_job_wheel
            return {{
                "ls": sorted(os.listdir(".")),
                "data": open("data.txt").read(),
                "values": [rtenv_job_mod.X, rtenv_job_pkg.Y, rtenv_job_single.Z, rtenv_job_wheel.VALUE],
            }}

        @ray.remote
        def parent():
            return ray.get(probe.remote())

        @ray.remote
        class Reader:
            def read(self):
                import rtenv_job_mod
                return open("data.txt").read(), rtenv_job_mod.X

        out["task"] = ray.get(probe.remote())
        out["nested"] = ray.get(parent.remote())
        out["actor"] = ray.get(Reader.remote().read.remote())
        out["driver_cwd_kept"] = os.getcwd() == driver_cwd
        out["context"] = ray.get_runtime_context().runtime_env
        ray.shutdown()
        print("RESULT" + json.dumps(out))
        """,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:])
    assert out["missing"] == (
        f"directory {tmp_path / 'missing'} must be an existing directory or a supported "
        "archive (.zip, .tar.gz, .tgz, .tar.xz)"
    )
    # .gitignore'd files, the 'excludes' and Ray's default excludes (.git) stay behind.
    expected = {"ls": [".gitignore", "data.txt", "rtenv_job_mod.py"], "data": "hello\n",
                "values": [42, 7, 9, "wheel"]}
    assert out["task"] == expected
    assert out["nested"] == expected
    assert out["actor"] == ["hello\n", 42]
    assert out["driver_cwd_kept"]
    assert out["context"]["working_dir"].startswith("gcs://_ray_pkg_")
    assert all(m.startswith("gcs://_ray_pkg_") for m in out["context"]["py_modules"])
    assert "excludes" not in out["context"]


def test_task_and_actor_local_working_dir(ray, tmp_path):
    wd = make_working_dir(tmp_path, "rtenv_local_mod")
    uri = f"local://{wd}"

    @ray.remote
    def probe():
        import rtenv_local_mod

        return os.getcwd(), open("data.txt").read(), rtenv_local_mod.X

    @ray.remote(runtime_env={"working_dir": uri})
    def decorated():
        return open("data.txt").read()

    @ray.remote
    def plain():
        return os.getcwd()

    @ray.remote
    class Reader:
        def read(self):
            import rtenv_local_mod

            return os.getcwd(), open("data.txt").read(), rtenv_local_mod.X

    assert ray.get(probe.options(runtime_env={"working_dir": uri}).remote()) == (str(wd), "hello\n", 42)
    assert ray.get(decorated.remote()) == "hello\n"
    assert ray.get(plain.remote()) != str(wd)
    reader = Reader.options(runtime_env={"working_dir": uri}).remote()
    assert ray.get(reader.read.remote()) == (str(wd), "hello\n", 42)


def test_task_working_dir_from_a_file_uri_archive(ray, tmp_path):
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:  # Ray drops a remote archive's top directory
        zf.writestr("top/rtenv_zip_mod.py", "X = 5\n")
        zf.writestr("top/data.txt", "zipped\n")

    @ray.remote(runtime_env={"working_dir": f"file://{archive}"})
    def probe():
        import rtenv_zip_mod

        return open("data.txt").read(), rtenv_zip_mod.X

    assert ray.get(probe.remote()) == ("zipped\n", 5)


def test_task_py_modules_local_uri(ray, tmp_path):
    (tmp_path / "mods" / "rtenv_local_pkg").mkdir(parents=True)
    (tmp_path / "mods" / "rtenv_local_pkg" / "__init__.py").write_text("Y = 8\n")

    @ray.remote(runtime_env={"py_modules": [f"local://{tmp_path / 'mods'}"]})
    def probe():
        import rtenv_local_pkg

        return rtenv_local_pkg.Y

    assert ray.get(probe.remote()) == 8


def test_task_pip_local_wheel(ray, tmp_path):
    wheel = make_wheel(str(tmp_path), "rtenv_task_wheel", "VALUE = 'installed'\n")
    requirements = tmp_path / "requirements.txt"
    requirements.write_text(wheel + "\n")

    @ray.remote
    def probe():
        import rtenv_task_wheel

        return rtenv_task_wheel.VALUE

    @ray.remote(runtime_env={"pip": str(requirements)})
    def from_file():
        import rtenv_task_wheel

        return rtenv_task_wheel.VALUE

    @ray.remote
    def plain():
        try:
            import rtenv_task_wheel  # noqa: F401
        except ImportError:
            return "absent"
        return "present"

    assert ray.get(probe.options(runtime_env={"pip": [wheel]}).remote()) == "installed"
    assert ray.get(from_file.remote()) == "installed"
    assert ray.get([plain.remote() for _ in range(2)]) == ["absent", "absent"]


def test_pip_failure_raises_runtime_env_setup_error(ray, tmp_path):
    missing = str(tmp_path / "no-such-package-dir")

    @ray.remote(runtime_env={"pip": [missing]})
    def f():
        return 1

    with pytest.raises(ray.exceptions.RuntimeEnvSetupError) as info:
        ray.get(f.remote(), timeout=180)
    assert str(info.value).startswith("Failed to set up runtime environment.")
    assert missing in str(info.value)


def test_unsupported_key_raises_runtime_env_setup_error(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(ray.exceptions.RuntimeEnvSetupError, match="conda"):
        ray.get(f.options(runtime_env={"conda": {"dependencies": ["pip"]}}).remote(), timeout=120)


def test_task_level_local_paths_are_rejected(ray, tmp_path):
    @ray.remote
    def f():
        return 1

    missing = tmp_path / "missing"
    with pytest.raises(ValueError) as info:
        f.options(runtime_env={"working_dir": str(missing)})
    assert str(info.value) == f"{missing} is not a valid path."
    for env in ({"working_dir": str(tmp_path)}, {"py_modules": [str(tmp_path)]}):
        with pytest.raises(ValueError) as info:
            f.options(runtime_env=env)
        assert str(info.value) == (
            f"{tmp_path} is not a valid URI. Passing directories or modules to be dynamically "
            "uploaded is only supported at the job level (i.e., passed to `ray.init`)."
        )
    with pytest.raises(ValueError, match="only supported at the job level"):
        ray.remote(runtime_env={"working_dir": str(tmp_path)})(lambda: 1)


def test_bad_values_raise_rays_errors(ray):
    @ray.remote
    def f():
        return 1

    with pytest.raises(TypeError, match=r"`working_dir` must be a string, got <class 'int'>\."):
        f.options(runtime_env={"working_dir": 5})
    with pytest.raises(TypeError, match=r"`py_modules` must be a list of strings, got <class 'str'>\."):
        f.options(runtime_env={"py_modules": "mods"})
    with pytest.raises(TypeError, match=r"runtime_env\['pip'\] must be of type str or List\[str\]"):
        f.options(runtime_env={"pip": 5})
    with pytest.raises(ValueError, match="runtime_env\\['pip'\\] can only have these fields"):
        f.options(runtime_env={"pip": {"pkgs": []}})
    with pytest.raises(ValueError, match="Only .zip, .tar.gz, .tgz, .tar.xz files are supported"):
        f.options(runtime_env={"working_dir": "s3://bucket/code.txt"})


def test_missing_local_uri_fails_task_and_actor(ray, tmp_path):
    uri = f"local://{tmp_path / 'absent'}"

    @ray.remote(runtime_env={"working_dir": uri})
    def f():
        return 1

    @ray.remote
    class A:
        def m(self):
            return 1

    with pytest.raises(ray.exceptions.RuntimeEnvSetupError) as info:
        ray.get(f.remote(), timeout=120)
    assert "which must already exist on every node" in str(info.value)
    actor = A.options(runtime_env={"working_dir": uri}).remote()
    with pytest.raises(ray.exceptions.RuntimeEnvSetupError) as info:
        ray.get(actor.m.remote(), timeout=120)
    assert "Could not create the actor because its associated runtime env failed" in str(info.value)


def test_env_vars_are_set_restored_and_inherited(ray):
    # Ray 2.60: a task's env_vars are visible to it and to the tasks and actors it starts
    # (children inherit the parent's runtime_env); other tasks do not see them.
    @ray.remote
    def read(name):
        return os.environ.get(name)

    @ray.remote
    class Reader:
        def read(self, name):
            return os.environ.get(name)

    @ray.remote
    def parent(name):
        return os.environ.get(name), ray.get(read.remote(name)), ray.get(Reader.remote().read.remote(name))

    name = "RAYCOMPAT_TEST_INHERITED"
    with_env = parent.options(runtime_env={"env_vars": {name: "yes"}})
    assert ray.get(with_env.remote(name)) == ("yes", "yes", "yes")
    assert ray.get([read.remote(name) for _ in range(4)]) == [None] * 4


def test_env_vars_of_overlapping_tasks_end_with_them(ray):
    # Ray (2.60, run here) runs each env in its own worker process, so a later task
    # never sees an earlier one's env_vars. Here 4 half-CPU tasks run at once on 2
    # worker processes, so some share one, and they start and end in the same order (A
    # starts, B starts, A ends, B ends), which saving and restoring per task got wrong:
    # a value outlived its task. (While tasks with different values overlap in one
    # process they share os.environ: the newest task's value is what all of them see.)
    import time

    @ray.remote(num_cpus=0.5)
    def read_then_sleep(seconds):
        value = os.environ.get("RAYCOMPAT_TEST_OVERLAP")
        time.sleep(seconds)
        return value

    refs = []
    for v in "abcd":
        opts = {"runtime_env": {"env_vars": {"RAYCOMPAT_TEST_OVERLAP": v}}}
        refs.append(read_then_sleep.options(**opts).remote(1.0))
        time.sleep(0.15)
    assert ray.get(refs, timeout=60) == list("abcd")
    assert ray.get([read_then_sleep.remote(0.3) for _ in range(4)], timeout=60) == [None] * 4


def test_runtime_env_class_is_a_dict_options_accept(ray):
    """``ray.runtime_env.RuntimeEnv`` is a dict of the fields given; a task given one gets
    its env_vars (Ray 2.60, checked); ``ray.cloudpickle`` pickles a lambda."""
    from importlib import import_module

    runtime_env = import_module(ray.__name__ + ".runtime_env")
    cloudpickle = import_module(ray.__name__ + ".cloudpickle")
    env = runtime_env.RuntimeEnv(env_vars={"RAYCOMPAT_RUNTIME_ENV_CLASS": "yes"})
    assert isinstance(env, dict) and env["env_vars"] == {"RAYCOMPAT_RUNTIME_ENV_CLASS": "yes"}
    assert "pip" not in env

    @ray.remote
    def read():
        return os.environ.get("RAYCOMPAT_RUNTIME_ENV_CLASS")

    assert ray.get(read.options(runtime_env=env).remote(), timeout=60) == "yes"
    assert cloudpickle.loads(cloudpickle.dumps(lambda x: x + 1))(1) == 2
