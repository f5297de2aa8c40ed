"""Shared fixtures: tiny models are built once per session (they take a few seconds)."""

import functools

import pytest

import gemma_tune  # noqa: F401  (selects the JAX backend before Keras is imported)
from gemma_tune import testing
from gemma_tune.training import template


@functools.cache
def _tokenizer(architecture):
    return testing.tiny_tokenizer(architecture)


@pytest.fixture(params=testing.ARCHITECTURES)
def architecture(request):
    return request.param


@pytest.fixture
def tokenizer():
    return _tokenizer("gemma1")


@pytest.fixture
def chat_template(tokenizer):
    return template.ChatTemplate(tokenizer)
