"""talos_init.wildcard.match is fnmatch.fnmatchcase, whatever the pattern."""

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st

from talos_init import wildcard

# Small alphabets so that stars, repeats and overlaps actually meet.
NAMES = st.text(alphabet="ab:*?[]-", max_size=12)
PATTERNS = st.text(alphabet="ab:*?[]-!", max_size=10)


@given(NAMES, PATTERNS)
def test_agrees_with_fnmatchcase(name, pattern):
    assert wildcard.match(name, pattern) == fnmatch.fnmatchcase(name, pattern)


@pytest.mark.parametrize(("name", "pattern", "expected"), [
    ("pci:v00001AF4d00001001sv00001AF4sd00000002bc01sc00i00", "pci:v00001AF4d*sv*sd*bc*sc*i*", True),
    ("pci:v00008086d00007010sv00001AF4sd00001100bc01sc01i80", "pci:v00001AF4d*sv*sd*bc*sc*i*", False),
    ("pci:v00008086d00005845sv00001AF4sd00001100bc01sc08i02", "pci:v*d*sv*sd*bc01sc08i02*", True),
    ("virtio:d00000002v00001AF4", "virtio:d00000002v*", True),
    ("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,0094,00E5",
     "cpu:type:x86,ven*fam*mod*:feature:*0094*", True),
    ("cpu:type:x86,ven0000fam0006mod003F:feature:,0000,00E5",
     "cpu:type:x86,ven*fam*mod*:feature:*0094*", False),
    ("loop0", "loop*", True), ("aba", "ab*ba", False), ("abba", "ab*ba", True), ("sr0", "sr?", True),
])
def test_modaliases_and_disk_names(name, pattern, expected):
    assert wildcard.match(name, pattern) is expected
