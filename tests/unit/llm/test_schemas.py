"""OpenAI request parsing names the offending field; stop strings cut streamed text exactly."""

from __future__ import annotations

import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlplat.llm import (
    ChatCompletionRequest,
    CompletionRequest,
    LLMRequestError,
    StopFilter,
    parse_request,
)

CHAT = {"model": "tiny-chat", "messages": [{"role": "user", "content": "hi"}]}


def test_valid_chat_and_completion_parse() -> None:
    req = parse_request(json.dumps({**CHAT, "max_tokens": 5, "stream": True, "stop": "\n",
                                    "temperature": 0, "user": "u1"}), ChatCompletionRequest)
    assert req.max_tokens == 5 and req.stream and req.stop_list() == ["\n"]
    assert req.user == "u1"
    comp = parse_request(b'{"model": "tiny-chat", "prompt": "the router"}', CompletionRequest)
    assert comp.prompt == "the router" and comp.max_tokens is None and comp.stop_list() == []


@pytest.mark.parametrize(
    ("body", "field", "match"),
    [
        (b"{not json", "<body>", "not valid JSON"),
        (b"[1, 2]", "<body>", "must be a JSON object, got list"),
        ({"messages": CHAT["messages"]}, "model", "model: Field required"),
        ({**CHAT, "messages": []}, "messages", "messages: List should have at least 1 item"),
        ({**CHAT, "messages": [{"role": "robot", "content": "x"}]}, "messages.0.role",
         "messages.0.role: Input should be 'system', 'user' or 'assistant' .got 'robot'"),
        ({**CHAT, "messages": [{"role": "user"}]}, "messages.0.content", "Field required"),
        ({**CHAT, "max_tokens": 0}, "max_tokens", "greater than or equal to 1"),
        ({**CHAT, "temperature": 3}, "temperature", "less than or equal to 2"),
        ({**CHAT, "n": 2}, "n", "Input should be 1"),
        ({**CHAT, "stop": ["a", ""]}, "stop", "at most 4 non-empty stop strings"),
        ({**CHAT, "logit_bias": {"1": 2}}, "logit_bias", "unknown or unsupported field"),
        ({**CHAT, "stream_options": {"include_usage": "maybe"}},
         "stream_options.include_usage", "valid boolean"),
        # Issue 19's classes: each was a 500 (or a silent NaN) before.
        ({**CHAT, "seed": 2**64}, "seed", "outside the 64-bit integer range"),
        (b'{"model": "m", "messages": [], "temperature": NaN}', "temperature",
         "NaN is not a finite number"),
        (b'{"model": "m", "messages": [], "top_p": 1e999}', "top_p",
         "Infinity is not a finite number"),
        (b"[" * 100_000 + b"]" * 100_000, "<body>", "nests deeper than 32"),
    ],
)
def test_bad_request_names_the_field(body, field, match) -> None:
    raw = body if isinstance(body, bytes) else json.dumps(body)
    with pytest.raises(LLMRequestError, match=match) as info:
        parse_request(raw, ChatCompletionRequest)
    assert info.value.field == field
    assert info.value.http_status == 400
    assert info.value.body()["error"]["param"] == field


def test_completion_rejects_a_list_of_prompts() -> None:
    with pytest.raises(LLMRequestError, match=r"prompt: Input should be a valid string") as info:
        parse_request(b'{"model": "m", "prompt": ["a", "b"]}', CompletionRequest)
    assert info.value.field == "prompt"


def test_stop_filter_holds_back_a_possible_stop_prefix() -> None:
    f = StopFilter(["END"])
    assert f.feed("abcE") == ("abc", False)   # "E" may start "END"
    assert f.feed("x") == ("Ex", False)       # it did not
    assert f.feed("EN") == ("", False)
    assert f.feed("Dtail") == ("", True)
    assert f.feed("more") == ("", True)
    g = StopFilter(["END"])
    g.feed("abE")
    assert g.flush() == "E"                   # stream ended: held text is released


@given(text=st.text(alphabet="ab\n", max_size=40),
       cuts=st.lists(st.integers(min_value=0, max_value=40), max_size=8),
       stops=st.lists(st.text(alphabet="ab\n", min_size=1, max_size=3), min_size=1, max_size=3))
def test_stop_filter_equals_cutting_at_the_first_stop(text, cuts, stops) -> None:
    """However the text is chunked, the output is the text up to the earliest stop string."""
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    f = StopFilter(stops)
    out, stopped = "", False
    for a, b in itertools.pairwise(bounds):
        piece, stopped = f.feed(text[a:b])
        out += piece
        if stopped:
            break
    if not stopped:  # the end of the stream settles a stop string held back so far
        out += f.flush()
        stopped = f.stopped
    first = min((i for i in (text.find(s) for s in stops) if i >= 0), default=-1)
    assert stopped == (first >= 0)
    assert out == (text[:first] if first >= 0 else text)


def test_a_longer_stop_starting_earlier_wins_across_chunks() -> None:
    """Found by the property test: with stops 'a' and '\\naa', the text '\\naa' sent as
    '\\na' + 'a' stops at 0 ('\\naa'), not after the '\\n' ('a')."""
    f = StopFilter(["a", "\naa"])
    assert f.feed("\na") == ("", False)
    assert f.feed("a") == ("", True)
    ended = StopFilter(["a", "\naa"])  # the same start, but the stream ends after '\na'
    assert ended.feed("\na") == ("", False)
    assert ended.flush() == "\n" and ended.stopped


def test_a_body_over_the_limit_is_413_before_it_is_parsed() -> None:
    import time

    from mlplat.config import RequestLimits

    huge = json.dumps({**CHAT, "messages": [{"role": "user", "content": "word " * 2_000_000}]})
    t0 = time.perf_counter()
    with pytest.raises(LLMRequestError, match="the limit is 1048576") as info:
        parse_request(huge, ChatCompletionRequest, RequestLimits())
    assert info.value.http_status == 413 and info.value.field == "<body>"
    assert time.perf_counter() - t0 < 0.05  # refused by size, not parsed (10 MB)
    # Refused before parsing, whatever the timing: an over-limit body that is not even JSON
    # is a 413 too, not the parser's 400.
    with pytest.raises(LLMRequestError, match="the limit is 1048576") as info:
        parse_request(b"{" * 1_048_577, ChatCompletionRequest, RequestLimits())
    assert info.value.http_status == 413


def test_a_temperature_too_small_to_divide_by_is_greedy() -> None:
    from mlplat.llm._engine import SamplingParams

    assert SamplingParams(max_tokens=4, temperature=1e-40).temperature == 0.0
    assert SamplingParams(max_tokens=4, temperature=0.7).temperature == 0.7
