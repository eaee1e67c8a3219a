"""Tests of `ferroflow.runstore`, a file per module of it."""
