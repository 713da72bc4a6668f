"""One look per method (fedakd.reporting.looks): distinct for the suite's 21 names and more, the same in every
study whatever its method list."""

from fedakd.reporting.looks import FOCUS_LOOK, REFERENCE_LOOK, SUITE_METHODS, method_looks


def test_24_methods_get_24_distinct_looks():
    methods = [*SUITE_METHODS, "my-method", "fedavg-mixup", "fedbn"]
    looks = method_looks(methods)
    assert len(methods) == 24
    assert len({(look.color, look.linestyle) for look in looks.values()}) == 24
    assert looks["fedakd"] == FOCUS_LOOK and looks["centralised"] == REFERENCE_LOOK
    assert FOCUS_LOOK.linewidth > max(look.linewidth for name, look in looks.items() if name != "fedakd")


def test_a_methods_look_does_not_depend_on_the_study():
    quick = method_looks(["fedavg", "fedavg-smote", "feddf", "fedakd-res", "fedakd"])
    headline = method_looks(["fedakd-res", "fedakd", "fedavg-ft", "fedavg", "my-method"])
    for name in set(quick) & set(headline):
        assert quick[name] == headline[name], name
    assert method_looks(["my-method"])["my-method"] == headline["my-method"]  # an unknown name too


def test_two_unknown_names_on_one_slot_are_told_apart_and_the_focus_follows_the_config():
    names = [f"variant-{i}" for i in range(12)]  # more unknown names than free slots of their first choice
    looks = method_looks(names)
    assert len({(look.color, look.linestyle) for look in looks.values()}) == 12
    assert method_looks(["fedavg", "fedakd"], focus="fedavg")["fedavg"] == FOCUS_LOOK
