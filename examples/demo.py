"""Placeholder demo until the pipeline lands: shows the compiled core is importable."""

import ferroflow

print(f"ferroflow {ferroflow.__version__}: core loaded")
