"""The README's recipes for torch and numpy users (issue 12), run against a
real mount: what a user pastes must give the tensor's true values. The
torch recipes run when python3-torch is installed (scripts/setup.sh
installs it for the tests); numpy's always do."""
import os
import tempfile
import unittest

import stfs_testlib as lib
from stfs_testlib import Mount

try:
    import numpy
except ImportError:  # pragma: no cover
    numpy = None
try:
    import torch
except ImportError:
    torch = None


def bf16_bits(values):
    """float32 values -> BF16 bit patterns (truncation; the values chosen are exact)."""
    return (numpy.asarray(values, "<f4").view("<u4") >> 16).astype("<u2")


@unittest.skipIf(numpy is None, "numpy missing")
@lib.require_fuse
class Recipes(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.values = numpy.array([1.0, -2.5, 0.15625, 2.0 ** 127, -0.0, 7.0], "<f4")  # exact in BF16
        cls.f32 = numpy.arange(12, dtype="<f4").reshape(3, 4)
        src = os.path.join(cls.tmp.name, "m.safetensors")
        lib.write_safetensors(src, [
            ("w.bf16", "BF16", [2, 3], bf16_bits(cls.values).tobytes()),
            ("w.f32", "F32", [3, 4], cls.f32.tobytes()),
        ])
        cls.mnt = Mount(src, "-o", "npy")
        cls.mnt.start()

    @classmethod
    def tearDownClass(cls):
        status = cls.mnt.stop()
        cls.tmp.cleanup()
        cls.mnt.check_clean_exit(status)

    def path(self, *p):
        return os.path.join(self.mnt.path, *p)

    def test_numpy_memmap_of_a_raw_file(self):
        a = numpy.memmap(self.path("w.f32"), dtype="<f4", mode="r", shape=(3, 4))
        self.assertTrue(numpy.array_equal(a, self.f32))
        del a

    @unittest.skipIf(torch is None, "python3-torch missing")
    def test_torch_from_file_on_a_raw_bf16_tensor(self):
        t = torch.from_file(self.path("w.bf16"), shared=False, size=6, dtype=torch.bfloat16)
        self.assertEqual(t.float().tolist(), self.values.tolist())

    @unittest.skipIf(torch is None, "python3-torch missing")
    def test_torch_from_file_shared_fails_on_a_read_only_mount(self):
        # shared=True opens the file read-write: the README says to use False.
        with self.assertRaises(RuntimeError):
            torch.from_file(self.path("w.bf16"), shared=True, size=6, dtype=torch.bfloat16)

    @unittest.skipIf(torch is None, "python3-torch missing")
    def test_bf16_npy_into_torch(self):
        a = numpy.load(self.path("__npy__", "w.bf16.npy"))
        self.assertEqual(a.dtype, numpy.dtype("<u2"))
        t = torch.from_numpy(a.view(numpy.int16)).view(torch.bfloat16)
        self.assertEqual(list(t.shape), [2, 3])
        self.assertEqual(t.float().flatten().tolist(), self.values.tolist())


if __name__ == "__main__":
    unittest.main()
