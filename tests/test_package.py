import ferroflow


def test_version_is_the_crate_version():
    assert ferroflow.__version__.count(".") == 2
