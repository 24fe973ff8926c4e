"""
The built-in event sinks, as plugins of the ``pushd.plugins`` package
(:mod:`pushd.sinks.registry` finds them by URL scheme).  Only factories live here.
"""

from pushd.sinks.jsonlines import JsonLinesSinkFactory
from pushd.sinks.mqtt import MqttSinkFactory
from pushd.sinks.webhook import WebhookSinkFactory

webhook = WebhookSinkFactory()
mqtt = MqttSinkFactory()
jsonlines = JsonLinesSinkFactory()
