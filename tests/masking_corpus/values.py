"""Values for the masking corpus, made from the formats' specifications (not from the engine).

Each generator returns a value a real system would issue: check digits are computed here with
code of this module's own (Luhn per ISO/IEC 7812, ISO 7064 mod 97-10 for IBANs, the SSA's SSN
ranges, HMRC's NINO prefixes, the Dutch 11-proof, the Spanish mod-23 letter), never with
jupyter_audit.masking. Negatives are values that look like PII but are not: they must survive.
"""

from __future__ import annotations

import base64
import json
import random
import string

FIRST = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy",
         "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter",
         "yasmin"]  # fmt: skip
LAST = ["smith", "jones", "garcia", "müller", "dubois", "rossi", "nguyen", "okafor", "tanaka",
        "kowalski", "silva", "novak", "khan", "larsen", "obrien"]  # fmt: skip
DOMAINS = ["example.com", "example.org", "mail.example.co.uk", "corp.example.net",
           "example.de", "uni.example.edu"]  # fmt: skip


class Gen:
    """All generators share one seeded random source, so the corpus is reproducible."""

    def __init__(self, seed: int = 13) -> None:
        self.r = random.Random(seed)

    def pick(self, seq):
        return self.r.choice(seq)

    def digits(self, n: int) -> str:
        return "".join(self.r.choice(string.digits) for _ in range(n))

    def alnum(self, n: int, alphabet: str = string.ascii_letters + string.digits) -> str:
        return "".join(self.r.choice(alphabet) for _ in range(n))

    # contact --------------------------------------------------------------------------------
    def email(self) -> str:
        first, last = self.pick(FIRST), self.pick(LAST).replace("ü", "u")
        local = self.pick([f"{first}.{last}", f"{first}{self.r.randint(1, 99)}",
                           f"{first[0]}{last}", f"{first}+news"])  # fmt: skip
        return f"{local}@{self.pick(DOMAINS)}"

    def phone(self) -> str:
        """Numbers from the ranges reserved for fiction/documentation where there are any
        (Ofcom 020 7946 0xxx / 07700 900xxx, NANP 555-01xx) and realistic plans elsewhere."""
        d = self.digits
        forms = [
            lambda: f"+44 20 7946 0{d(3)}",
            lambda: f"+44 7700 900{d(3)}",
            lambda: f"020 7946 0{d(3)}",
            lambda: f"07700 900{d(3)}",
            lambda: f"+1 415 555 01{d(2)}",
            lambda: f"+1-212-555-01{d(2)}",
            lambda: f"(415) 555-01{d(2)}",
            lambda: f"415-555-01{d(2)}",
            lambda: f"212.555.01{d(2)}",
            lambda: f"1-800-555-01{d(2)}",
            lambda: f"+1 (646) 555-01{d(2)}",
            lambda: f"+4930{d(7)}",
            lambda: f"+49 30 {d(8)}",
            lambda: f"030 {d(7)}",
            lambda: f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"01 {d(2)} {d(2)} {d(2)} {d(2)}",
            lambda: f"06.{d(2)}.{d(2)}.{d(2)}.{d(2)}",
            lambda: f"+14155550{d(3)}",
            lambda: f"+61 2 {d(4)} {d(4)}",
            lambda: f"+81 3-{d(4)}-{d(4)}",
            lambda: f"+34 91 {d(3)} {d(2)} {d(2)}",
        ]
        return self.pick(forms)()

    # financial ------------------------------------------------------------------------------
    @staticmethod
    def luhn_check_digit(body: str) -> str:
        total = 0
        for i, c in enumerate(reversed(body)):
            n = int(c)
            if i % 2 == 0:  # these positions are doubled once the check digit is appended
                n *= 2
                if n > 9:
                    n -= 9
            total += n
        return str((10 - total % 10) % 10)

    def card(self) -> str:
        prefix, length = self.pick([("4", 16), ("51", 16), ("55", 16), ("2221", 16),
                                    ("34", 15), ("37", 15), ("6011", 16), ("35", 16),
                                    ("4", 13), ("62", 19)])  # fmt: skip
        body = prefix + self.digits(length - len(prefix) - 1)
        number = body + self.luhn_check_digit(body)
        style = self.pick(["plain", "space", "dash"])
        if style == "plain" or length not in (15, 16):
            return number
        sep = " " if style == "space" else "-"
        if length == 15:
            return sep.join([number[:4], number[4:10], number[10:]])
        return sep.join(number[i : i + 4] for i in range(0, 16, 4))

    def not_luhn(self, length: int = 16) -> str:
        body = self.digits(length - 1)
        good = self.luhn_check_digit(body)
        bad = str((int(good) + self.r.randint(1, 9)) % 10)
        return body + bad

    @staticmethod
    def iban_check(country: str, bban: str) -> str:
        rearranged = bban + country + "00"
        number = int("".join(str(int(c, 36)) for c in rearranged))
        return f"{98 - number % 97:02d}"

    def iban(self) -> str:
        country, bban = self.pick(
            [
                ("DE", lambda: self.digits(18)),
                ("GB", lambda: self.alnum(4, string.ascii_uppercase) + self.digits(14)),
                ("FR", lambda: self.digits(23)),
                ("NL", lambda: self.alnum(4, string.ascii_uppercase) + self.digits(10)),
                ("ES", lambda: self.digits(20)),
                ("IT", lambda: "X" + self.digits(22)),
                ("BE", lambda: self.digits(12)),
                ("CH", lambda: self.digits(17)),
            ]
        )
        bban = bban()
        compact = country + self.iban_check(country, bban) + bban
        if self.r.random() < 0.5:
            return compact
        return " ".join(compact[i : i + 4] for i in range(0, len(compact), 4))

    # national ids ---------------------------------------------------------------------------
    def ssn(self, sep: str = "-") -> str:
        while True:
            area = self.r.randint(1, 899)
            if area != 666:
                break
        return f"{area:03d}{sep}{self.r.randint(1, 99):02d}{sep}{self.r.randint(1, 9999):04d}"

    def invalid_ssn(self) -> str:
        return self.pick([f"666-{self.digits(2)}-1234", f"000-12-{self.digits(4)}",
                          f"9{self.digits(2)}-12-3456", f"123-00-{self.digits(4)}",
                          "123-45-0000"])  # fmt: skip

    def nino(self) -> str:
        first = "ABCEGHJKLMNOPRSTWXYZ"
        second = "ABCEGHJKLMNPRSTWXYZ"
        while True:
            prefix = self.pick(first) + self.pick(second)
            if prefix not in ("BG", "GB", "KN", "NK", "NT", "TN", "ZZ"):
                break
        d = self.digits(6)
        suffix = self.pick("ABCD")
        if self.r.random() < 0.5:
            return f"{prefix}{d}{suffix}"
        return f"{prefix} {d[:2]} {d[2:4]} {d[4:]} {suffix}"

    def sin(self) -> str:
        body = self.pick("1234567") + self.digits(7)
        n = body + self.luhn_check_digit(body)
        sep = self.pick([" ", "-"])
        return sep.join([n[:3], n[3:6], n[6:]])

    def bsn(self) -> str:
        while True:
            d = self.digits(8)
            total = sum(int(c) * w for c, w in zip(d, range(9, 1, -1), strict=True))
            last = total % 11
            if last < 10 and d[0] != "0":
                return d + str(last)

    def dni(self) -> str:
        letters = "TRWAGMYFPDXBNJZSQVHLCKE"
        if self.r.random() < 0.7:
            n = self.digits(8)
            return n + letters[int(n) % 23]
        lead = self.pick("XYZ")
        n = self.digits(7)
        return lead + n + letters[int(str("XYZ".index(lead)) + n) % 23]

    # network --------------------------------------------------------------------------------
    def ipv4(self) -> str:
        first = self.pick([10, 172, 192, 203, 198, 81, 34, 52, 100])
        return f"{first}.{self.r.randint(0, 255)}.{self.r.randint(0, 255)}.{self.r.randint(1, 254)}"

    def ipv6(self) -> str:
        groups = [f"{self.r.randint(0, 0xFFFF):x}" for _ in range(8)]
        style = self.pick(["full", "compressed", "doc"])
        if style == "full":
            return ":".join(groups)
        if style == "doc":
            return f"2001:db8:{groups[0]}::{groups[1]}"
        return ":".join(groups[:3]) + "::" + ":".join(groups[6:])

    # personal -------------------------------------------------------------------------------
    def birth_date(self) -> str:
        y, m, d = self.r.randint(1940, 2005), self.r.randint(1, 12), self.r.randint(1, 28)
        months = ["January", "February", "March", "April", "May", "June", "July", "August",
                  "September", "October", "November", "December"]  # fmt: skip
        return self.pick([f"{y}-{m:02d}-{d:02d}", f"{d:02d}/{m:02d}/{y}", f"{d:02d}.{m:02d}.{y}",
                          f"{d} {months[m - 1]} {y}", f"{months[m - 1]} {d}, {y}"])  # fmt: skip

    # secrets --------------------------------------------------------------------------------
    def password(self) -> str:
        words = ["Tr0ub4dor", "hunter2", "S3cr3t", "Winter2024", "correcthorse", "P@ssw0rd",
                 "letmein", "Zx9-Qw7", "s3cure_pw", "Dr4g0n"]  # fmt: skip
        return self.pick(words) + self.pick(["", "!", "#1", "_x", self.digits(3), "%2F9"])

    def url_safe_password(self) -> str:
        return self.pick(["Tr0ub4dor", "hunter2x", "S3cr3t99", "Winter2024", "correcthorse",
                          "letmein77", "Zx9-Qw7"]) + self.digits(2)  # fmt: skip

    def b64url(self, nbytes: int) -> str:
        raw = bytes(self.r.randrange(256) for _ in range(nbytes))
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    def jwt(self) -> str:
        header = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
        claims = {"sub": self.digits(8), "name": self.pick(FIRST), "iat": 1700000000}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode().rstrip("=")
        return f"{header}.{payload}.{self.b64url(32)}"

    def aws_key_id(self) -> str:
        return self.pick(["AKIA", "ASIA"]) + self.alnum(16, string.ascii_uppercase + "234567")

    def aws_secret(self) -> str:
        while True:
            s = base64.b64encode(bytes(self.r.randrange(256) for _ in range(30))).decode()
            if any(c.isupper() for c in s) and any(c.islower() for c in s):
                return s  # 40 characters

    def github_token(self) -> str:
        if self.r.random() < 0.7:
            return self.pick(["ghp_", "gho_", "ghs_"]) + self.alnum(36)
        return "github_pat_" + self.alnum(22) + "_" + self.alnum(59)

    def gitlab_token(self) -> str:
        return "glpat-" + self.alnum(20, string.ascii_letters + string.digits + "_-")

    def slack_token(self) -> str:
        kind = self.pick(["xoxb", "xoxp", "xoxa"])
        return f"{kind}-{self.digits(12)}-{self.digits(13)}-{self.alnum(24)}"

    def sk_key(self) -> str:
        return self.pick(["sk-", "sk-proj-", "sk-ant-api03-"]) + self.alnum(40)

    def azure_key(self) -> str:
        return base64.b64encode(bytes(self.r.randrange(256) for _ in range(64))).decode()

    def pem(self, kind: str = "RSA PRIVATE KEY", escaped: bool = False) -> str:
        body = base64.b64encode(bytes(self.r.randrange(256) for _ in range(180))).decode()
        lines = [body[i : i + 64] for i in range(0, len(body), 64)]
        nl = "\\n" if escaped else "\n"
        return nl.join([f"-----BEGIN {kind}-----", *lines, f"-----END {kind}-----"])

    def api_key(self) -> str:
        return self.alnum(self.r.randint(24, 40))

    # negatives ------------------------------------------------------------------------------
    def git_sha(self) -> str:
        return self.alnum(40, "0123456789abcdef")

    def sha256(self) -> str:
        return self.alnum(64, "0123456789abcdef")

    def uuid(self) -> str:
        h = self.alnum(32, "0123456789abcdef")
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:]}"

    def version(self) -> str:
        return self.pick([f"{self.r.randint(0, 3)}.{self.r.randint(0, 30)}.{self.r.randint(0, 9)}",
                          f"1.{self.r.randint(20, 26)}.{self.r.randint(0, 5)}.{self.r.randint(1, 9)}",
                          f"10.0.{self.r.randint(17000, 22000)}.{self.r.randint(1, 999)}"])  # fmt: skip

    def timestamp(self) -> str:
        y, m, d = self.r.randint(2019, 2026), self.r.randint(1, 12), self.r.randint(1, 28)
        hh, mm, ss = self.r.randint(0, 23), self.r.randint(0, 59), self.r.randint(0, 59)
        return self.pick([f"{y}-{m:02d}-{d:02d}T{hh:02d}:{mm:02d}:{ss:02d}Z",
                          f"{y}-{m:02d}-{d:02d} {hh:02d}:{mm:02d}:{ss:02d}",
                          str(self.r.randint(1_600_000_000, 1_800_000_000)),
                          f"{d:02d}.{m:02d}.{y} {hh:02d}:{mm:02d}"])  # fmt: skip

    def product_code(self) -> str:
        return self.pick([f"SKU-{self.digits(4)}-{self.digits(4)}-{self.digits(2)}",
                          f"PN {self.digits(2)}-{self.digits(4)}-{self.digits(3)}",
                          f"ORD-{self.r.randint(2019, 2026)}-{self.digits(6)}",
                          f"INV{self.digits(10)}", f"item#{self.digits(7)}",
                          f"{self.digits(3)}-{self.digits(3)}-{self.digits(3)}-{self.digits(3)}"])  # fmt: skip
