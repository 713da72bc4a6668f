"""Every random stream's tag lives in fedakd.seeding; no two streams of one family share a tag, or one stream's
draws would repeat another's."""

from fedakd import seeding


def test_partition_stages_have_distinct_tags():
    tags = [seeding.PARTITION_TRANSFER, seeding.PARTITION_IMBALANCE, seeding.PARTITION_SPLIT,
            seeding.PARTITION_VALIDATION]
    assert len(set(tags)) == len(tags)


def test_the_engine_and_the_methods_have_distinct_tags():
    tags = [seeding.INIT, seeding.SAMPLE, seeding.LOCAL, seeding.SERVER, seeding.CCVR, seeding.CREFF_INIT,
            seeding.CREFF_CLIENT, seeding.CREFF_SERVER]
    assert len(set(tags)) == len(tags)
    assert seeding.LOCAL_PLAIN != seeding.LOCAL_CLIENT_KD


def test_streams_differ_by_tag_and_by_trailing_zero():
    assert seeding.derive_seed(0, seeding.LOCAL, 1, 0) != seeding.derive_seed(0, seeding.LOCAL, 1)
    assert seeding.derive_seed(5, seeding.INIT) != seeding.derive_seed(5, seeding.SAMPLE)
    assert seeding.client_preparation_seed(3, 2) == seeding.derive_seed(3, 2)  # the saved results depend on it
