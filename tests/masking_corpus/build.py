"""Builds the labelled masking corpus: ``python tests/masking_corpus/build.py`` writes
``corpus.jsonl`` beside it (deterministic: the same file every time).

Each line is one snippet as it reaches the trail (a cell's code, a SQL statement and its
parameters, a URL, an HTTP body, a traceback, a shell command, a terminal line, a dataframe
repr, an env/YAML/INI/JSON file, a log line) with

- ``positives``: every value that must be masked, with its ``type`` (the pseudonym TYPE), its
  ``kind`` (what it is: ``phone``, ``aws-secret-key`` ...) and its ``start``/``end`` offsets;
- ``negatives``: values that look like PII but are not, and must survive unchanged.

Templates mark a value with ``«P:kind»`` (positive) or ``«N:kind»`` (negative); the values come
from `values.Gen`, written from the formats' specifications, never from the engine.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from values import Gen  # type: ignore[import-not-found,no-redef]
else:
    from .values import Gen

HERE = Path(__file__).resolve().parent
CORPUS = HERE / "corpus.jsonl"

# kind -> (generator method, pseudonym TYPE)
POSITIVE = {
    "email": ("email", "EMAIL"),
    "phone": ("phone", "PHONE"),
    "phone-bare": (lambda g: g.pick(["4155550", "2125550", "02079460"]) + g.digits(3), "PHONE"),
    "card": ("card", "CARD"),
    "iban": ("iban", "IBAN"),
    "ssn": ("ssn", "SSN"),
    "ssn-spaced": (lambda g: g.ssn(" "), "SSN"),
    "ssn-bare": (lambda g: g.ssn(""), "SSN"),
    "uk-nino": ("nino", "NATIONAL_ID"),
    "ca-sin": ("sin", "NATIONAL_ID"),
    "nl-bsn": ("bsn", "NATIONAL_ID"),
    "es-dni": ("dni", "NATIONAL_ID"),
    "ipv4": ("ipv4", "IP_ADDRESS"),
    "ipv6": ("ipv6", "IP_ADDRESS"),
    "dob": ("birth_date", "DOB"),
    "dob-iso": (lambda g: f"{g.r.randint(1940, 2005)}-0{g.r.randint(1, 9)}-1{g.r.randint(0, 9)}", "DOB"),
    "jwt": ("jwt", "SECRET"),
    "aws-key-id": ("aws_key_id", "SECRET"),
    "aws-secret-key": ("aws_secret", "SECRET"),
    "github-token": ("github_token", "SECRET"),
    "gitlab-token": ("gitlab_token", "SECRET"),
    "slack-token": ("slack_token", "SECRET"),
    "sk-key": ("sk_key", "SECRET"),
    "azure-key": ("azure_key", "SECRET"),
    "pem": (lambda g: g.pem(g.pick(["RSA PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY"])), "SECRET"),
    "pem-escaped": (lambda g: g.pem("PRIVATE KEY", escaped=True), "SECRET"),
    "password": ("password", "SECRET"),
    "url-password": ("url_safe_password", "SECRET"),
    "api-key": ("api_key", "SECRET"),
}  # fmt: skip

NEGATIVE = {
    "not-luhn": lambda g: g.not_luhn(g.pick([13, 15, 16, 19])),
    "version": lambda g: g.version(),
    "semver": lambda g: f"{g.r.randint(0, 3)}.{g.r.randint(0, 30)}.{g.r.randint(0, 9)}",
    "git-sha": lambda g: g.git_sha(),
    "sha256": lambda g: g.sha256(),
    "uuid": lambda g: g.uuid(),
    "timestamp": lambda g: g.timestamp(),
    "seed": lambda g: g.pick(["42", "1234", "20240101", "31337", "1234567", "987654321"]),
    "product-code": lambda g: g.product_code(),
    "invalid-ssn": lambda g: g.invalid_ssn(),
    "float": lambda g: f"{g.r.random():.10f}",
    "count": lambda g: str(g.r.randint(1000, 99_999_999)),
    "date": lambda g: g.timestamp()[:10] if g.r.random() < 0.5 else "2024-06-30",
    "port": lambda g: g.pick(["5432", "3306", "8080", "6379", "27017"]),
    "word": lambda g: g.pick(["password", "Password", "PASSWORD", "token", "secret", "api_key"]),
    "placeholder": lambda g: g.pick(["$1", "%s", "%(password)s", "${DB_PASSWORD}", "$API_TOKEN"]),
}

# form -> templates. «P:kind» must be masked, «N:kind» must survive.
TEMPLATES: dict[str, list[str]] = {
    "code": [
        'customer = {"name": "Ann", "email": "«P:email»", "phone": "«P:phone»"}',
        'send_invoice(to="«P:email»", cc=None, order_id="«N:product-code»")',
        'df.loc[df.email == "«P:email»", "churned"] = 1  # seed «N:seed»',
        'DB_PASSWORD = "«P:password»"\nengine = connect(host="db", port=«N:port»)',
        'os.environ["DB_PASSWORD"] = "«P:password»"',
        "settings['api_key'] = '«P:api-key»'",
        'os.environ.setdefault("OPENAI_API_KEY", "«P:sk-key»")',
        'client = OpenAI(api_key="«P:sk-key»")\nmodel = "gpt-4o"',
        'boto3.client("s3", aws_access_key_id="«P:aws-key-id»", aws_secret_access_key="«P:aws-secret-key»")',
        'gh = Github("«P:github-token»")\nrepo = gh.get_repo("org/model")',
        'HEADERS = {"PRIVATE-TOKEN": "«P:gitlab-token»"}',
        'slack = WebClient(token="«P:slack-token»")',
        'requests.get(url, headers={"Authorization": "Bearer «P:jwt»"})',
        'conn = psycopg2.connect(host="db.internal", user="etl", password="«P:password»", dbname="sales")',
        'card = "«P:card»"\nassert len(card) > 12',
        'payment = Payment(iban="«P:iban»", amount=«N:float»)',
        'patient = {"ssn": "«P:ssn»", "dob": "«P:dob»"}',
        'ssn = "«P:ssn-bare»"\nrandom_state = «N:seed»',
        'employee.nino = "«P:uk-nino»"',
        'record = {"bsn": "«P:nl-bsn»", "created": "«N:timestamp»"}',
        'cliente = {"dni": "«P:es-dni»", "telefono": "«P:phone»"}',
        'sin_number = "«P:ca-sin»"  # Canadian SIN',
        'ALLOWED_HOSTS = ["«P:ipv4»", "localhost"]',
        'sock.connect(("«P:ipv6»", 443))',
        'user.birth_date = "«P:dob»"',
        'people.append(Person("Ann", born="«P:dob»"))',
        'phone_number = "«P:phone-bare»"',
        'KEY = """«P:pem»"""',
        'ORDER = "«N:not-luhn»"  # order number, fails the checksum',
        'print("numpy", np.__version__)  # «N:version»\ncommit = "«N:git-sha»"',
        'run_id = "«N:uuid»"; digest = "«N:sha256»"',
        "np.random.seed(«N:seed»)\nX = rng.normal(size=«N:count»)",
        'password = getpass.getpass("Password: ")',
        'if not password:\n    raise ValueError("password is required")',
        'tokenizer = AutoTokenizer.from_pretrained("bert-base-uncased")\nmax_tokens = «N:count»',
        'session_started = "«N:timestamp»"\nsku = "«N:product-code»"',
        'conn_str = "Server=db;Database=sales;User Id=etl;Password=«P:password»;"',
        'azure = "DefaultEndpointsProtocol=https;AccountName=acct;AccountKey=«P:azure-key»;EndpointSuffix=core.windows.net"',
        'bus = "Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=«P:azure-key»"',
        'config["database"]["password"] = "«P:password»"',
        'print(f"calling {name} at «P:phone»")  # retry «N:seed»',
        'assert parse_version("«N:version»") < parse_version("2.0")',
        'df = df[df["ip"] != "«P:ipv4»"]\nprint(df.shape, "«N:uuid»")',
        'r = requests.post(url, json={"user": "«P:email»", "password": "«P:password»"})',
        'pd.Timestamp("«N:timestamp»") - pd.Timedelta(days=«N:seed»)',
    ],
    "sql": [
        "SELECT * FROM customers WHERE email = '«P:email»'",
        "SELECT id FROM customers WHERE phone = '«P:phone»' AND created_at > '«N:date»'",
        "INSERT INTO payments (card, amount) VALUES ('«P:card»', «N:float»)",
        "UPDATE accounts SET iban = '«P:iban»' WHERE id = «N:count»",
        "SELECT * FROM patients WHERE ssn = '«P:ssn»'",
        "SELECT * FROM patients WHERE date_of_birth = '«P:dob-iso»'",
        "SELECT count(*) FROM people WHERE birth_date < DATE '«P:dob-iso»'",
        "DELETE FROM sessions WHERE ip = '«P:ipv4»' AND started < '«N:timestamp»'",
        "CREATE USER etl IDENTIFIED BY '«P:password»'",
        "ALTER USER analyst WITH PASSWORD '«P:password»'",
        "SELECT order_no FROM orders WHERE order_no = '«N:not-luhn»' AND sku = '«N:product-code»'",
        "SELECT * FROM releases WHERE version = '«N:version»' AND commit = '«N:git-sha»'",
        "SELECT * FROM runs WHERE run_id = '«N:uuid»' AND checksum = '«N:sha256»'",
        "SELECT password_hash, last_login FROM users WHERE username = 'ann'",
        "INSERT INTO staff (name, nino) VALUES ('Ann', '«P:uk-nino»')",
    ],
    "sql-params": [
        'SELECT * FROM customers WHERE email = %s\n-- params: ["«P:email»", «N:count»]',
        'INSERT INTO contacts VALUES (?, ?)\n-- params: ["«P:phone»", "«N:date»"]',
        'UPDATE cards SET number = :num WHERE id = :id\n-- params: {"num": "«P:card»", "id": «N:count»}',
        'SELECT * FROM t WHERE token = $1\n-- params: {"token": "«P:api-key»"}',
        'SELECT * FROM users WHERE ssn = %(ssn)s\n-- params: {"ssn": "«P:ssn»"}',
        "UPDATE users SET password = «N:placeholder» WHERE id = «N:count»",
        'SELECT * FROM logins WHERE ip = $1 AND email = $2\n-- params: ["«P:ipv4»", "«P:email»"]',
    ],
    "url": [
        "postgresql://etl:«P:url-password»@db.internal:«N:port»/sales",
        "mysql+pymysql://root:«P:url-password»@10.0.0.5/app".replace("10.0.0.5", "«P:ipv4»"),
        "https://api.example.com/v1/users?email=«P:email»&page=2",
        "https://api.example.com/v1/search?api_key=«P:api-key»&q=churn",
        "https://hooks.example.com/notify?token=«P:api-key»&channel=ops",
        "https://example.com/reset?user=ann&sig=«P:api-key»",
        "https://files.example.com/releases/v«N:version»/model.bin",
        "https://api.example.com/v1/runs/«N:uuid»?page=«N:seed»",
        "redis://:«P:url-password»@cache.internal:6379/0",
        "https://github.com/org/repo/commit/«N:git-sha»",
    ],
    "http-body": [
        '{"customer": {"email": "«P:email»", "phone": "«P:phone»"}, "order": "«N:product-code»"}',
        '{"password": "«P:password»", "username": "ann"}',
        '{"client_secret": "«P:api-key»", "grant_type": "client_credentials"}',
        '{"access_token": "«P:jwt»", "token_type": "Bearer", "expires_in": 3600}',
        '{"type": "service_account", "project_id": "ml-prod", "private_key_id": "«N:git-sha»", "private_key": "«P:pem-escaped»", "client_email": "«P:email»"}',
        '{"card": {"number": "«P:card»", "exp": "12/29"}, "amount": «N:float»}',
        '{"iban": "«P:iban»", "reference": "«N:product-code»"}',
        '{"features": [«N:float», «N:float», «N:float»], "model_version": "«N:version»"}',
        '{"run_id": "«N:uuid»", "created": "«N:timestamp»", "sha256": "«N:sha256»"}',
        "grant_type=password&username=ann&password=«P:url-password»",
        '{"patient": {"dob": "«P:dob»", "ssn": "«P:ssn»"}}',
        '{"client_ip": "«P:ipv4»", "user_agent": "python-requests/«N:version»"}',
    ],
    "traceback": [
        'Traceback (most recent call last):\n  File "<cell>", line 3, in <module>\n    connect("postgresql://etl:«P:url-password»@db/sales")\nOperationalError: connection refused',
        'Traceback (most recent call last):\n  File "/opt/app.py", line 12, in send\nValueError: invalid recipient «P:email»',
        "KeyError: 'password'\n  during handling of order «N:product-code»",
        "botocore.exceptions.ClientError: SignatureDoesNotMatch for key «P:aws-key-id» (request id «N:uuid»)",
        'psycopg2.errors.UniqueViolation: duplicate key value violates unique constraint "customers_email_key"\nDETAIL:  Key (email)=(«P:email») already exists.',
        "requests.exceptions.HTTPError: 401 Client Error for url: https://api.example.com/v1?api_key=«P:api-key»",
        'ValueError: time data "«N:timestamp»" does not match format "%Y"',
    ],
    "shell": [
        "mysql -u root -p«P:password» -h db.internal sales",
        "mysqldump --user=backup --password=«P:password» sales > dump.sql",
        "psql --password «P:password» -h db -U etl",
        "PGPASSWORD=«P:password» psql -h db.internal -U etl -c 'select 1'",
        "curl -u deploy:«P:url-password» https://ci.example.com/api",
        "curl -H 'Authorization: Bearer «P:jwt»' https://api.example.com/me",
        "sshpass -p «P:password» ssh ops@«P:ipv4»",
        "ssh -i ~/.ssh/id_ed25519 admin@«P:ipv4» uptime",
        "ping -c 3 «P:ipv6»",
        "git checkout «N:git-sha» && pip install numpy==«N:version»",
        "docker run --rm -e API_TOKEN=«P:api-key» model:latest",
        "aws configure set aws_secret_access_key «P:aws-secret-key»",
        "export GITHUB_TOKEN=«P:github-token»",
        "python train.py --seed «N:seed» --epochs 10 --run-id «N:uuid»",
        "mysql -u root -p -h db.internal",
        "sha256sum model.bin  # «N:sha256»",
    ],
    "terminal": [
        "$ mysql -uroot -p«P:password» app\nWelcome to the MySQL monitor.",
        "ann@host:~$ echo $DB_PASSWORD\n«P:password»".replace(
            "$DB_PASSWORD\n«P:password»", "$DB_PASSWORD\n"
        ),
        "Connecting to «P:ipv4»:«N:port»... connected.",
        "64 bytes from «P:ipv4»: icmp_seq=1 ttl=57 time=«N:float» ms",
        "Enter password: \nERROR 1045 (28000): Access denied for user 'root'",
        "Successfully installed pandas-«N:version» numpy-«N:version»",
        "[«N:timestamp»] INFO served GET /health in 3 ms",
        "inet6 «P:ipv6»/64 scope global dynamic",
    ],
    "dataframe": [
        "   customer_id                 email            phone\n0         «N:count»  «P:email»  «P:phone»\n1         «N:count»  «P:email»  «P:phone»",
        "      name          card  amount\n0      Ann  «P:card»  «N:float»",
        "   id        ssn          card\n0   1  «P:ssn»  «P:card»",
        "   order_no        sku  qty\n0  «N:not-luhn»  «N:product-code»    3",
        # (a four-part version alone in a table cell reads as an IPv4 address: known limit)
        "                                 run_id     version\n0  «N:uuid»  «N:semver»",
        "(«N:count», '«P:email»', '«P:phone»')",
        "[(1, 'Ann', '«P:iban»'), (2, 'Bob', '«P:iban»')]",
    ],
    "env": [
        "DB_HOST=db.internal\nDB_PASSWORD=«P:password»\nDB_PORT=«N:port»",
        "OPENAI_API_KEY=«P:sk-key»\nMODEL=gpt-4o",
        "AWS_ACCESS_KEY_ID=«P:aws-key-id»\nAWS_SECRET_ACCESS_KEY=«P:aws-secret-key»\nAWS_REGION=eu-west-1",
        "SLACK_BOT_TOKEN=«P:slack-token»",
        "GITLAB_TOKEN=«P:gitlab-token»\nCI_COMMIT_SHA=«N:git-sha»",
        "SENTRY_RELEASE=«N:version»\nRUN_ID=«N:uuid»",
    ],
    "yaml": [
        "database:\n  host: db.internal\n  user: etl\n  password: «P:password»\n  port: «N:port»",
        "api:\n  token: «P:api-key»\n  timeout: 30",
        "contact:\n  email: «P:email»\n  phone: «P:phone»",
        "model:\n  version: «N:version»\n  seed: «N:seed»\n  checksum: «N:sha256»",
        "auth:\n  password: \n  password_file: /run/secrets/db",
        "services:\n  db:\n    environment:\n      POSTGRES_PASSWORD: «N:placeholder»",
        "contact:\n  mobile: «P:phone»\n  since: «N:date»",
        "form:\n  fields:\n    - «N:word»\n    - email\n  required: true",
    ],
    "ini": [
        "[database]\nhost = db.internal\npassword = «P:password»\nport = «N:port»",
        "[client]\nuser=root\npassword=«P:password»",
        "[aws]\naws_access_key_id = «P:aws-key-id»\naws_secret_access_key = «P:aws-secret-key»",
        "[build]\nversion = «N:version»\nrevision = «N:git-sha»",
    ],
    "json": [
        '{"db": {"user": "etl", "password": "«P:password»"}}',
        '{"apiKey": "«P:api-key»", "region": "eu"}',
        '{"email": "«P:email»", "created": "«N:timestamp»"}',
        '{"version": "«N:version»", "build": «N:count»}',
        '{"ip": "«P:ipv4»", "ipv6": "«P:ipv6»"}',
        '{"nino": "«P:uk-nino»", "sin": "«P:ca-sin»"}',
    ],
    "log": [
        "2024-05-01 10:00:00 INFO login ok for «P:email» from «P:ipv4»",
        "WARN payment declined card=«P:card» order=«N:product-code»",
        "DEBUG calling +«N:count» retries (attempt «N:seed»)".replace("+«N:count»", "«N:count»"),
        "INFO customer called from «P:phone» about ticket «N:product-code»",
        "INFO born «P:dob» enrolled «N:date»",
        "ERROR token expired: «P:jwt»",
        "INFO build «N:version» commit «N:git-sha» took «N:float» s",
        "INFO uploaded «N:count» rows (sha256 «N:sha256»)",
        "AUDIT DNI «P:es-dni» verified; SSN «P:ssn-spaced» on file",
        "INFO the password reset link was sent",
        "INFO user «P:email» changed phone to «P:phone» at «N:timestamp»",
        "DEBUG peer «P:ipv6» port «N:port» rtt «N:float» ms",
        "INFO patient record: name=Ann Lee; date_of_birth=«P:dob»; mrn=«N:count»",
        "WARN rejected SSN «N:invalid-ssn» (not an issued number)",
        "INFO field «N:word» left empty by user ann",
    ],
}

_MARK = re.compile(r"«([PN]):([a-z0-9-]+)»")


def _value(g: Gen, spec) -> str:
    return getattr(g, spec)() if isinstance(spec, str) else spec(g)


def render(g: Gen, form: str, template: str, number: int) -> dict:
    text, pos, positives, negatives = [], 0, [], []
    length = 0
    for m in _MARK.finditer(template):
        literal = template[pos : m.start()]
        text.append(literal)
        length += len(literal)
        polarity, kind = m.groups()
        if polarity == "P":
            spec, typ = POSITIVE[kind]
            value = _value(g, spec)
            positives.append(
                {
                    "value": value,
                    "type": typ,
                    "kind": kind,
                    "start": length,
                    "end": length + len(value),
                }  # fmt: skip
            )
        else:
            value = NEGATIVE[kind](g)
            negatives.append({"value": value, "kind": kind})
        text.append(value)
        length += len(value)
        pos = m.end()
    text.append(template[pos:])
    return {
        "id": f"{form}-{number:04d}",
        "form": form,
        "text": "".join(text),
        "positives": positives,
        "negatives": negatives,
    }


def build(per_template: int = 5, seed: int = 13) -> list[dict]:
    """Every template rendered ``per_template`` times with fresh values."""
    g = Gen(seed)
    out = []
    for form, templates in TEMPLATES.items():
        n = 0
        for template in templates:
            for _ in range(per_template):
                out.append(render(g, form, template, n))
                n += 1
    return out


def dumps(snippets: list[dict]) -> str:
    return "".join(json.dumps(s, ensure_ascii=False, sort_keys=True) + "\n" for s in snippets)


def main() -> None:
    snippets = build()
    CORPUS.write_text(dumps(snippets), encoding="utf-8")
    kinds = sorted({p["kind"] for s in snippets for p in s["positives"]})
    print(f"{len(snippets)} snippets, {len(kinds)} positive kinds -> {CORPUS}")


if __name__ == "__main__":
    main()
