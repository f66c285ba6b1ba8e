#!/usr/bin/python3
"""mime_roundtrip.py - parse a message built by smtp/mime.c with Python's
`email` package (policy.default) and print what a real mail reader sees.

Usage: /usr/bin/python3 mime_roundtrip.py MESSAGE_FILE

Prints one "key: value" line per field, UTF-8, with backslash and newline
escaped as \\\\ and \\n, in this order:
  subject, from_name, from_addr, to (addresses joined by ", " as
  name<addr>), cc, reply_to, content_type, text, html, defects (count of
  parser defects in the message, its headers and its parts), and one
  "header <name>: <value>" line per X- header. Body line ends are shown
  as "\n" whatever the transfer encoding.
Exit 0 when it could parse, 2 on usage error.
"""
import email
import email.policy
import sys


def esc(s):
    return s.replace("\\", "\\\\").replace("\n", "\\n")


def addrs(msg, name):
    h = msg[name]
    if h is None:
        return ""
    return ", ".join("%s<%s>" % (a.display_name, a.addr_spec) for a in h.addresses)


def main():
    if len(sys.argv) != 2:
        print("usage: mime_roundtrip.py FILE", file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)

    defects = len(msg.defects)
    for k, v in msg.items():
        defects += len(getattr(v, "defects", ()))
    text = html = ""
    for part in msg.walk():
        defects += len(part.defects)
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        # base64 text keeps its canonical CRLF (RFC 2045 2.10) through
        # get_content(); show line ends the way a mail reader does
        body = part.get_content().replace("\r\n", "\n")
        if part.get_content_type() == "text/plain" and not text:
            text = body
        elif part.get_content_type() == "text/html" and not html:
            html = body

    frm = msg["From"].addresses[0] if msg["From"] is not None else None
    out = [
        ("subject", str(msg["Subject"] or "")),
        ("from_name", frm.display_name if frm else ""),
        ("from_addr", frm.addr_spec if frm else ""),
        ("to", addrs(msg, "To")),
        ("cc", addrs(msg, "Cc")),
        ("reply_to", addrs(msg, "Reply-To")),
        ("content_type", msg.get_content_type()),
        ("text", text),
        ("html", html),
        ("defects", str(defects)),
    ]
    for k, v in msg.items():
        if k.lower().startswith("x-"):
            out.append(("header " + k, str(v)))
    sys.stdout.write("".join("%s: %s\n" % (k, esc(v)) for k, v in out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
