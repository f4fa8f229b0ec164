"""statuses: Twitter-search-like statuses (the 2014 API), deeply nested.

Mostly Japanese text with emoji, newlines, quotes and backslashes; `id` and
`in_reply_to_status_id` above 2**53 (a double cannot hold them: `id_str` is
the exact value); `user{}`, `entities{hashtags[], urls[], user_mentions[]}`
with the indices of each in the text, `metadata{}`, and ~30% retweets, which
nest the retweeted status (with its own user) in `retweeted_status`.
"""
from __future__ import annotations

import time

import numpy as np
import orjson

_FIRST_ID = 505874924095815681  # ~5.06e17 > 2**53 ~ 9.0e15
_NEWEST_S = 1409444955  # Sun Aug 31 00:29:15 +0000 2014; the search answers newest first
_PHRASES = ["名前:前田あゆみ", "第一印象:なんか怖っ！", "今の印象:とりあえずキモい。噛み合わない", "好きなところ:ぶすでキモいとこ😋✨✨",
            "思い出:んーーー、ありすぎ😊❤️", "LINE交換できる？:あぁ……ごめん✋", "トプ画をみて:照れますがな😘✨", "一言:お前は一生もんのダチ💖",
            "朝一ライカス辛目だよw", "【金一地区太鼓台】川関と小山の見分けがつかない", "RT希望", "おはようございます☀",
            "今日も一日がんばりましょう！", "「引用」と\"quote\"と\\バックスラッシュ\\", "Good morning!", "Can't wait 🎉",
            "¿Qué tal? Ñandú", "tab\there"]
_LANGS = ["ja"] * 15 + ["en"] * 3 + ["es", "zh", "und"]
_USERS = ["ayuu0123", "yuttari1998", "RIM0707", "nasan_arai", "longhairxMIURA", "kyoko1220", "sutaa_ouji",
          "ochinu_ma", "gmanagement", "taa11111"]
_NAMES = ["AYUMI", "なぁぁぁ", "★りむ★", "miura desu", "佐藤 太郎", "Renée \"R\" O'Connor", "嶋田 ❤︎", "ＫＯＨＥＩ"]
_TAGS = ["天才", "RTした人全員フォローする", "followmejp", "相互フォロー", "金一地区", "夏休み"]
_SOURCES = ['<a href="http://twitter.com/download/iphone" rel="nofollow">Twitter for iPhone</a>',
            '<a href="http://twitter.com/download/android" rel="nofollow">Twitter for Android</a>', "web"]


def _date(s: int) -> str:
    return time.strftime("%a %b %d %H:%M:%S +0000 %Y", time.gmtime(s))


def _user(k: int, r: list) -> dict:
    """User k (popularity rank): the same name and counts wherever it appears."""
    uid = 100000000 + k * 7919
    return {"id": uid, "id_str": str(uid), "name": _NAMES[k % len(_NAMES)],
            "screen_name": _USERS[k % len(_USERS)] + (str(k // len(_USERS)) if k >= len(_USERS) else ""),
            "location": ("", "東京", "Osaka, Japan")[k % 3], "description": _PHRASES[k % len(_PHRASES)],
            "url": None, "entities": {"description": {"urls": []}}, "protected": False,
            "followers_count": (k * 2654435761) % 5000 if k % 9 else 10**6 // (k + 1),
            "friends_count": (k * 40503) % 2000, "listed_count": k % 7, "created_at": _date(1300000000 + k * 86400),
            "favourites_count": (k * 977) % 3000, "utc_offset": None if k % 2 else 32400,
            "time_zone": None if k % 2 else "Tokyo", "geo_enabled": k % 5 == 0, "verified": k % 97 == 0,
            "statuses_count": (k * 1013) % 30000, "lang": _LANGS[(k + r[5]) % len(_LANGS)],
            "profile_background_color": "C0DEED", "profile_image_url_https":
                f"https://pbs.twimg.com/profile_images/{497760886795153410 + k}/LDjA_normal.jpeg",
            "default_profile": k % 4 != 0, "following": False, "notifications": False}


def _status(i: int, r: list, retweet: dict | None) -> dict:
    """Status i from random ints r (12 of them, below 2**31)."""
    sid = _FIRST_ID + i * 1_000_003 + r[0] % 1000
    lang = _LANGS[r[1] % len(_LANGS)]
    text, mentions, tags, urls = "", [], [], []
    user = _user(int((r[2] / 2**31) ** 3 * 300), r)
    if retweet is not None:
        text = f"RT @{retweet['user']['screen_name']}: "
        mentions.append({"screen_name": retweet["user"]["screen_name"], "name": retweet["user"]["name"],
                         "id": retweet["user"]["id"], "id_str": retweet["user"]["id_str"], "indices": [3, len(text) - 2]})
    elif r[3] % 3 == 0:
        to = _user(r[4] % 300, r)
        text = f"@{to['screen_name']} "
        mentions.append({"screen_name": to["screen_name"], "name": to["name"], "id": to["id"], "id_str": to["id_str"],
                         "indices": [0, len(text) - 1]})
    text += "\n".join(_PHRASES[(r[5] >> (4 * j)) % len(_PHRASES)] for j in range(1 + r[6] % 4))
    for j in range(r[7] % 5 // 3 + r[7] % 2 * (r[8] % 2)):
        tag = _TAGS[(r[8] >> j) % len(_TAGS)]
        tags.append({"text": tag, "indices": [len(text) + 1, len(text) + 2 + len(tag)]})
        text += f" #{tag}"
    if r[9] % 10 == 0:
        url = f"http://t.co/{r[9] % 10**8:08d}"
        urls.append({"url": url, "expanded_url": f"http://example.jp/{r[10] % 1000}", "display_url":
                     f"example.jp/{r[10] % 1000}", "indices": [len(text) + 1, len(text) + 1 + len(url)]})
        text += " " + url
    reply = mentions and retweet is None
    st = {"metadata": {"result_type": "popular" if r[11] % 30 == 0 else "recent", "iso_language_code": lang},
          "created_at": _date(_NEWEST_S - i * 7 - r[10] % 5), "id": sid, "id_str": str(sid), "text": text,
          "source": _SOURCES[r[11] % len(_SOURCES)], "truncated": False,
          "in_reply_to_status_id": sid - 10**9 if reply and r[11] % 2 else None,
          "in_reply_to_status_id_str": str(sid - 10**9) if reply and r[11] % 2 else None,
          "in_reply_to_user_id": mentions[0]["id"] if reply else None,
          "in_reply_to_user_id_str": mentions[0]["id_str"] if reply else None,
          "in_reply_to_screen_name": mentions[0]["screen_name"] if reply else None,
          "user": user, "geo": None, "coordinates": None, "place": None, "contributors": None}
    if retweet is not None:
        st["retweeted_status"] = retweet
    st.update(retweet_count=retweet["retweet_count"] if retweet else r[10] % 3,
              favorite_count=r[4] % 50 if r[4] % 4 == 0 else 0,
              entities={"hashtags": tags, "symbols": [], "urls": urls, "user_mentions": mentions},
              favorited=False, retweeted=False, lang=lang)
    return st


def statuses(n: int, seed: int = 1) -> bytes:
    """n statuses as NDJSON bytes, newest first."""
    rng = np.random.default_rng([seed, 5])
    ints = rng.integers(0, 1 << 31, size=(n, 2, 12)).tolist()
    out = []
    for i in range(n):
        r, r_rt = ints[i]
        retweet = None
        if r[0] % 10 < 3:
            retweet = _status(i + 10**6, r_rt, None)
            retweet["retweet_count"] = 1 + r_rt[0] % 500
        out.append(orjson.dumps(_status(i, r, retweet)))
    out.append(b"")
    return b"\n".join(out)
