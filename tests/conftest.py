"""Suite-wide settings: no DataLoader worker processes by default (the tests are small and the
machine is shared); a test that wants workers sets ``training.num_workers`` itself."""

import os

os.environ.setdefault("GPERC_NUM_WORKERS", "0")
