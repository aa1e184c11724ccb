#!/usr/bin/env python3
"""A real SMTP server for the receipt e-mail tests (aiosmtpd, installed by ops/test).

Usage: smtp_sink.py PORT OUT_DIR [CERT_PEM KEY_PEM [USER PASSWORD]]
Listens on 127.0.0.1:PORT: plain SMTP; with a certificate, STARTTLS is required; with a user,
AUTH (PLAIN/LOGIN, over TLS only) is required and only that user's password is accepted. Each message accepted is written to
OUT_DIR as one JSON file (written under a temporary name, then renamed: a reader never sees
half a file): envelope, headers, the text/plain body, and every attachment with its content
type and its bytes in hex. Prints "ready" on stdout once it accepts connections; runs until
killed.
"""
import email
import email.policy
import json
import os
import sys
import ssl
import threading

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult


class Sink:
    def __init__(self, out):
        self.out = out
        self.n = 0
        self.lock = threading.Lock()

    async def handle_DATA(self, server, session, envelope):
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        text = None
        attachments = []
        for part in msg.walk():
            if part.is_multipart():
                continue
            name = part.get_filename()
            if name:
                attachments.append(
                    {
                        "filename": name,
                        "contentType": part.get_content_type(),
                        "hex": part.get_payload(decode=True).hex(),
                    }
                )
            elif part.get_content_type() == "text/plain" and text is None:
                text = part.get_content()
        with self.lock:
            self.n += 1
            n = self.n
        record = {
            "mailFrom": envelope.mail_from,
            "rcptTos": envelope.rcpt_tos,
            "from": str(msg["from"]),
            "to": str(msg["to"]),
            "subject": str(msg["subject"]),
            "messageId": str(msg["message-id"]),
            "text": text,
            "attachments": attachments,
        }
        tmp = os.path.join(self.out, f".{os.getpid()}-{n}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(record, f)
        os.rename(tmp, os.path.join(self.out, f"{os.getpid()}-{n}.json"))
        return "250 Message accepted for delivery"


def main():
    port, out = int(sys.argv[1]), sys.argv[2]
    os.makedirs(out, exist_ok=True)
    options = {}
    if len(sys.argv) >= 5:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(sys.argv[3], sys.argv[4])
        options.update(tls_context=ctx, require_starttls=True)
    if len(sys.argv) >= 7:
        user, password = sys.argv[5].encode(), sys.argv[6].encode()

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = auth_data.login == user and auth_data.password == password
            return AuthResult(success=ok)

        options.update(authenticator=authenticator, auth_required=True, auth_require_tls=True)
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port, **options)
    controller.start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
