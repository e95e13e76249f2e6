"""Hypothesis strategies for VALID gossipreg model instances.

Every strategy here generates instances that construct without error; sizes
are kept small so that properties using them stay fast. Reuse them from any
test: ``from tests.strategies import services``.
"""

from __future__ import annotations

from hypothesis import strategies as st

from gossipreg.core.model import Endpoint, Node, Service, Value

__all__ = [
    "addresses",
    "endpoints",
    "metadata",
    "name_texts",
    "names",
    "nodes",
    "ports",
    "services",
    "texts",
    "values",
]

# Valid Unicode only: hypothesis' "utf-8" codec excludes lone surrogates.
_CHARS = st.characters(codec="utf-8")
# Names (and metadata keys, addresses) also exclude the control characters the model
# refuses in them: category Cc is U+0000-U+001F and U+007F-U+009F; Zl and Zp are
# U+2028 and U+2029 (gossipreg.core.model.CONTROL_CHARACTERS).
_NAME_CHARS = st.characters(codec="utf-8", exclude_categories=["Cc", "Zl", "Zp"])


def texts(*, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Arbitrary (non-surrogate) text, short: control characters included (metadata values)."""
    return st.text(_CHARS, min_size=min_size, max_size=max_size)


def name_texts(*, min_size: int = 0, max_size: int = 12) -> st.SearchStrategy[str]:
    """Arbitrary (non-surrogate) text without control characters, short."""
    return st.text(_NAME_CHARS, min_size=min_size, max_size=max_size)


def names(*, allow_empty: bool = False) -> st.SearchStrategy[str]:
    """A name: mostly identifier-like, sometimes arbitrary Unicode (no control characters)."""
    min_size = 0 if allow_empty else 1
    return st.one_of(
        st.from_regex(r"[a-z][a-z0-9._-]{0,15}", fullmatch=True),
        name_texts(min_size=min_size, max_size=12),
    )


def metadata() -> st.SearchStrategy[dict[str, str]]:
    """A small str-to-str map (far below ``MAX_METADATA_BYTES``); values may hold control characters."""
    return st.dictionaries(name_texts(max_size=8), texts(max_size=16), max_size=4)


def ports() -> st.SearchStrategy[int]:
    return st.integers(min_value=1, max_value=65535)


_HOSTS = st.one_of(
    st.ip_addresses(v=4).map(str),
    st.from_regex(r"[a-z][a-z0-9-]{0,10}(\.[a-z][a-z0-9-]{0,10}){0,2}", fullmatch=True),
)


def addresses() -> st.SearchStrategy[str]:
    """A node address without an explicit port field: every form go-micro emits."""
    return st.one_of(
        st.builds(lambda h, p: f"{h}:{p}", _HOSTS, ports()),
        st.builds(lambda h, p: f"[{h}]:{p}", st.ip_addresses(v=6).map(str), ports()),
        _HOSTS,
        st.ip_addresses(v=6).map(str),
        st.just(""),
        # arbitrary text without a colon can never look like host:port
        name_texts(max_size=16).filter(lambda s: ":" not in s),
    )


@st.composite
def nodes(draw: st.DrawFn, node_id: st.SearchStrategy[str] | None = None) -> Node:
    """A valid :class:`Node`, in the old (address + port) or new (host:port) form."""
    nid = draw(node_id if node_id is not None else names())
    md = draw(metadata())
    if draw(st.booleans()):
        return Node(id=nid, address=draw(_HOSTS), port=draw(ports()), metadata=md)
    return Node(id=nid, address=draw(addresses()), metadata=md)


def values(max_depth: int = 3) -> st.SearchStrategy[Value]:
    """A valid :class:`Value` at most ``max_depth`` levels deep (and a few fields wide)."""
    leaf = st.builds(Value, name=names(allow_empty=True), type=names(allow_empty=True))
    if max_depth <= 1:
        return leaf
    return st.one_of(
        leaf,
        st.builds(
            Value,
            name=names(allow_empty=True),
            type=names(allow_empty=True),
            values=st.lists(st.deferred(lambda: values(max_depth - 1)), max_size=2).map(tuple),
        ),
    )


def endpoints() -> st.SearchStrategy[Endpoint]:
    """A valid :class:`Endpoint`."""
    return st.builds(
        Endpoint,
        name=names(),
        request=st.none() | values(),
        response=st.none() | values(),
        metadata=metadata(),
    )


def services(*, max_nodes: int = 3, max_endpoints: int = 2) -> st.SearchStrategy[Service]:
    """A valid :class:`Service` with unique node ids."""
    return st.builds(
        Service,
        name=names(),
        version=names(allow_empty=True),
        metadata=metadata(),
        endpoints=st.lists(endpoints(), max_size=max_endpoints).map(tuple),
        nodes=st.lists(nodes(), max_size=max_nodes, unique_by=lambda n: n.id).map(tuple),
    )
