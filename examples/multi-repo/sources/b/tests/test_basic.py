from chunks import first


def test_first():
    assert first([3, 4]) == 3


def test_first_of_nothing():
    assert first([]) is None
