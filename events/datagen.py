"""Records with the shapes and value sets of Confluent's datagen clickstream quickstart.

Shared by the `datagen` source and the Kafka producer (`python -m tools.produce`),
so the embedded demo and the Kafka route see the same data.
"""

from __future__ import annotations

import random
from types import SimpleNamespace

import orjson

from events.user_clicks import user_click

IPS = [
    "111.152.45.45", "111.203.236.146", "111.168.57.122", "111.249.79.93", "111.168.57.122",
    "111.90.225.227", "111.173.165.103", "111.145.8.144", "111.245.174.248", "111.245.174.111",
    "222.152.45.45", "222.203.236.146", "222.168.57.122", "222.249.79.93", "222.168.57.122",
    "222.90.225.227", "222.173.165.103", "222.145.8.144", "222.245.174.248", "222.245.174.222",
    "122.152.45.245", "122.203.236.246", "122.168.57.222", "122.249.79.233", "122.168.57.222",
    "122.90.225.227", "122.173.165.203", "122.145.8.244", "122.245.174.248", "122.245.174.122",
    "233.152.245.45", "233.203.236.146", "233.168.257.122", "233.249.279.93", "233.168.257.122",
    "233.90.225.227", "233.173.215.103", "233.145.28.144", "233.245.174.248", "233.245.174.233",
]  # fmt: skip
REQUESTS = [
    "GET /index.html HTTP/1.1",
    "GET /site/user_status.html HTTP/1.1",
    "GET /site/user_status.html HTTP/1.1",  # twice as likely, as in datagen
    "GET /site/login.html HTTP/1.1",
    "GET /images/track.png HTTP/1.1",
    "GET /images/logo-small.png HTTP/1.1",
]
STATUSES = ["200", "302", "404", "405", "406", "407"]
BYTES = ["278", "1289", "2048", "4096", "4006", "4196", "14096"]
AGENTS = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/59.0.3071.115 Safari/537.36",
]
USERNAMES = [
    "akatz1022", "bobk_43", "alison_99", "k_robertz_88", "Ferd88", "Reeva43", "Antonio_0966",
    "ArlyneW8ter", "DimitriSchenz88", "Oriana_70", "AbdelKable_86", "Roberto_123", "AlanGreta_GG66",
    "Nathan_126", "victor_cont", "Jane_Doe_1", "Liz1977", "Ruthie_91",
]  # fmt: skip
FIRST_NAMES = ["Elwyn", "Curran", "Hanson", "Woodrow", "Ferd", "Reeva", "Antonio", "Arlyne"]
LAST_NAMES = ["Vanyard", "Lalonde", "Garrity", "Fairlie", "Trice", "Tomasello", "Jelk", "Pask"]
CITIES = ["Palo Alto", "San Francisco", "Raleigh", "London", "Frankfurt", "New York"]
LEVELS = ["Gold", "Silver", "Platinum"]
CODES = {
    200: "Successful",
    302: "Redirect",
    404: "Page not found",
    405: "Method not allowed",
    406: "Not acceptable",
    407: "Proxy authentication required",
}
MAX_USER_ID = 39  # clicks use userid -1..39; -1 and 0 never match a user


class ClickGenerator:
    """Generates `clickstream` payloads; `_time` counts up like datagen's iteration."""

    def __init__(self, seed: int | None = None) -> None:
        self.rng = random.Random(seed)
        self.counter = 1

    def click(self) -> dict[str, object]:
        rng = self.rng
        n = self.counter
        self.counter += 10
        return {
            "ip": rng.choice(IPS),
            "userid": rng.randint(-1, MAX_USER_ID),
            "remote_user": "-",
            "time": str(n),
            "_time": n,
            "request": rng.choice(REQUESTS),
            "status": rng.choice(STATUSES),
            "bytes": rng.choice(BYTES),
            "referrer": "-",
            "agent": rng.choice(AGENTS),
        }

    def user(self, user_id: int) -> dict[str, object]:
        rng = self.rng
        return {
            "user_id": user_id,
            "username": rng.choice(USERNAMES),
            "registered_at": rng.randrange(1407645330000, 1502339792000),
            "first_name": rng.choice(FIRST_NAMES),
            "last_name": rng.choice(LAST_NAMES),
            "city": rng.choice(CITIES),
            "level": rng.choice(LEVELS),
        }


def enriched(click: dict[str, object], user: dict[str, object] | None) -> bytes:
    """The USER_CLICKSTREAM value of a generated click and its user (`user_click`), the
    click's numbers cast as the clickstream declaration casts them."""
    typed = SimpleNamespace(
        ip=str(click["ip"]),
        request=str(click["request"]),
        status=int(str(click["status"])),
        bytes=int(str(click["bytes"])),
    )
    joined = SimpleNamespace(**user) if user else None
    return orjson.dumps(user_click(typed, joined))


def dumps(value: dict[str, object]) -> bytes:
    return orjson.dumps(value)
