"""The README recipe "openai-python": a callable `api_key` that asks the broker.

openai-python calls `api_key` before every request, so each request carries the
broker's current token and nothing in the program refreshes anything.

Run by broker/tests/e2e_recipes.rs: argv = brokerctl, base_url, CA file, count.
It makes `count` requests, waiting for a line on stdin before each one after
the first (the test lets the broker refresh in between), and prints nothing
but errors: the fake API records which token each request carried.
"""

import ssl
import subprocess
import sys

import openai

BROKERCTL, BASE_URL, CA_FILE, COUNT = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])


# --- the recipe -------------------------------------------------------------
def broker_token() -> str:
    """An access token valid for at least 60 more seconds, from the broker."""
    out = subprocess.run([BROKERCTL, "token"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


client = openai.OpenAI(
    api_key=broker_token,
    base_url=BASE_URL,
    # Only for the test: trust the fake API's throw-away CA.
    http_client=openai.DefaultHttpxClient(verify=ssl.create_default_context(cafile=CA_FILE)),
)
# -----------------------------------------------------------------------------

for n in range(COUNT):
    if n:
        sys.stdin.readline()
    client.models.list()
    print("ok", flush=True)
