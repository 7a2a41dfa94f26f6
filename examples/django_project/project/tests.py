"""The example under Django's own test runner: ``python manage.py test``.

Without SEGMENT_WRITE_KEY the settings point the integration at a local collector, so these tests
check what really crossed the wire.
"""

from __future__ import annotations

import os
from typing import Any
from unittest import skipIf

from django.contrib.auth.models import User
from django.test import TestCase

from project import local_segment
from segment_exposure.integrations.django import get_provider


@skipIf(bool(os.environ.get("SEGMENT_WRITE_KEY")), "sends to the real Segment")
class CheckoutExposureTests(TestCase):
    def received(self) -> list[dict[str, Any]]:
        self.assertTrue(get_provider().flush(10))
        return [
            m for m in local_segment.collector().events() if m["properties"]["flag_key"] == "checkout-flow"
        ]

    def setUp(self) -> None:
        local_segment.collector().clear()

    def test_logged_in_user(self) -> None:
        user = User.objects.create_user("alice")
        self.client.force_login(user)
        self.client.cookies["amp_device_id"] = "device-alice"
        body = self.client.get("/").json()
        self.assertEqual((body["user_id"], body["device_id"]), (str(user.pk), "device-alice"))
        [event] = self.received()
        self.assertEqual((event["userId"], event["anonymousId"]), (str(user.pk), "device-alice"))
        self.assertEqual(event["properties"]["variant"], body["variant"])

    def test_anonymous_visitor_gets_a_device_id(self) -> None:
        response = self.client.get("/")
        device_id = response.cookies["amp_device_id"].value
        self.assertEqual(response.json()["device_id"], device_id)
        self.client.get("/")  # the same visitor again: deduplicated
        [event] = self.received()
        self.assertEqual((event["userId"], event["anonymousId"]), (None, device_id))
