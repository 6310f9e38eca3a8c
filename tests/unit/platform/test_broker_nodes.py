"""HAI_AMQP_URL may name a cluster's nodes: the order in which they are tried."""

from __future__ import annotations

import pytest

from shared.messaging.rabbit.connection import Nodes, broker_urls

A, B, C = "amqp://h:p@a:5672/", "amqp://h:p@b:5672/", "amqp://h:p@c:5672/"


def test_one_url_or_several_separated_by_commas():
    assert broker_urls(A) == [A]
    assert broker_urls(f" {A}, {B},{C} ,") == [A, B, C]
    with pytest.raises(ValueError):
        broker_urls(" , ")


def test_every_node_is_tried_once_starting_anywhere():
    orders = {tuple(Nodes([A, B, C]).in_order()) for _ in range(60)}
    assert orders <= {(A, B, C), (B, C, A), (C, A, B)}
    assert len(orders) > 1  # the processes spread over the cluster


def test_a_failed_node_goes_last_and_the_one_that_answered_comes_first():
    nodes = Nodes([A, B, C])
    nodes.answered(A)
    assert nodes.in_order() == [A, B, C]
    nodes.failed(A)
    assert nodes.in_order() == [B, C, A]
    nodes.failed(A)  # an older failure of a node no longer first changes nothing
    assert nodes.in_order() == [B, C, A]
    nodes.answered(C)
    assert nodes.in_order() == [C, A, B]
