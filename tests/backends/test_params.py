import pytest

from strop.backends import SamplingParams
from strop.errors import ConfigError


@pytest.mark.parametrize(
    "kwargs,needle",
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"temperature": -1}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"top_k": 0}, "top_k"),
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"stop": "###"}, "stop"),
    ],
)
def test_bad_values_name_the_parameter_and_value(kwargs, needle):
    with pytest.raises(ConfigError) as e:
        SamplingParams(**kwargs)
    assert needle in str(e.value) and repr(next(iter(kwargs.values())))[:3] in str(e.value)


def test_params_are_frozen():
    p = SamplingParams()
    with pytest.raises(AttributeError):
        p.temperature = 2.0  # type: ignore[misc]
