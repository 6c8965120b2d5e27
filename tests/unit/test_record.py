"""talos_init.record: what PID 1's record classes promise in place of dataclasses."""

import copy

import pytest

from talos_init.record import FrozenRecordError, field, fields, record, replace


@record(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list[str] = field(default_factory=list)


@record
class Counter:
    name: str
    count: int = 0

    def __repr__(self) -> str:
        return f"<{self.name}: {self.count}>"


def test_init_takes_positional_keyword_and_defaults():
    assert (Point(1).x, Point(1).y, Point(1).tags) == (1, 0, [])
    assert Point(1, 2) == Point(x=1, y=2) == Point(1, y=2)
    assert fields(Point) == ("x", "y", "tags") == Point.__match_args__


def test_default_factory_gives_each_instance_its_own_value():
    a, b = Point(1), Point(2)
    a.tags.append("a")
    assert b.tags == [] and "tags" not in Point.__dict__


@pytest.mark.parametrize(("args", "kwargs", "message"), [
    ((), {}, "Point() missing required argument: 'x'"),
    ((1, 2, [], 4), {}, "Point() takes 3 positional arguments but 4 were given"),
    ((1,), {"x": 2}, "Point() got multiple values for argument 'x'"),
    ((1,), {"z": 2}, "Point() got an unexpected keyword argument 'z'"),
])
def test_bad_arguments_are_named(args, kwargs, message):
    with pytest.raises(TypeError) as info:
        Point(*args, **kwargs)
    assert str(info.value) == message


def test_frozen_refuses_assignment_and_hashes_by_value():
    p = Point(1, 2, ())
    with pytest.raises(FrozenRecordError, match="cannot assign to field 'x' of a frozen Point"):
        p.x = 3
    with pytest.raises(AttributeError):
        del p.y
    assert hash(p) == hash(Point(1, 2, ())) and {p, Point(1, 2, ())} == {p}


def test_mutable_records_assign_and_are_unhashable_like_dataclasses():
    c = Counter("boots")
    c.count += 1
    assert c == Counter("boots", 1) and c != Counter("boots", 2)
    with pytest.raises(TypeError):
        hash(c)


def test_repr_equality_and_the_class_own_methods():
    assert repr(Point(1, 2)) == "Point(x=1, y=2, tags=[])"
    assert repr(Counter("n", 3)) == "<n: 3>"  # its own __repr__ is kept
    assert Point(1) != Counter("1") and Point(1) != (1, 0, [])


def test_replace_builds_a_new_record_through_init():
    p = Point(1, 2)
    q = replace(p, y=5)
    assert (p.y, q.y, q.x) == (2, 5, 1)
    with pytest.raises(TypeError, match="Point has no field 'z'"):
        replace(p, z=1)


def test_copy_and_deepcopy_work_on_frozen_records():
    p = Point(1, 2, ["a"])
    d = copy.deepcopy(p)
    assert d == p and d.tags is not p.tags and copy.copy(p) == p


def test_a_field_without_default_after_one_with_is_refused():
    with pytest.raises(TypeError, match="Bad: field 'b' without a default follows one with"):
        @record
        class Bad:
            a: int = 1
            b: int



def test_post_init_is_refused_naming_the_class():
    """dataclasses would run __post_init__ and record would not: a class that has one, its own
    or inherited, is refused at decoration instead of silently skipped."""
    with pytest.raises(TypeError, match="Checked: record does not call __post_init__"):
        @record
        class Checked:
            a: int

            def __post_init__(self) -> None:
                raise AssertionError("never called")

    class Base:
        def __post_init__(self) -> None:
            pass

    with pytest.raises(TypeError, match="Child: record does not call __post_init__"):
        @record(frozen=True)
        class Child(Base):
            a: int
