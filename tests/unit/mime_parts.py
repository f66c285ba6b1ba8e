#!/usr/bin/python3
"""mime_parts.py - parse a message built by smtp/mime.c with Python's
`email` package (policy.default) and print its MIME tree and every
attachment as a mail reader sees it.

Usage: /usr/bin/python3 mime_parts.py MESSAGE_FILE

Prints, UTF-8:
  structure: multipart/mixed(multipart/alternative(text/plain,text/html),application/pdf)
  one line per non-text leaf part, in walk order:
    part: <content type>|<disposition>|<filename>|<content id>|<hex of get_content() bytes>
  defects: <count of parser defects in the message, its headers and parts>
Exit 0 when it could parse, 2 on usage error.
"""
import email
import email.policy
import sys


def tree(part):
    if part.is_multipart():
        return "%s(%s)" % (part.get_content_type(),
                           ",".join(tree(p) for p in part.iter_parts()))
    return part.get_content_type()


def main():
    if len(sys.argv) != 2:
        print("usage: mime_parts.py FILE", file=sys.stderr)
        return 2
    with open(sys.argv[1], "rb") as f:
        msg = email.message_from_binary_file(f, policy=email.policy.default)
    out = ["structure: " + tree(msg)]
    defects = len(msg.defects)
    for part in msg.walk():
        defects += len(part.defects)
        for _, v in part.items():
            defects += len(getattr(v, "defects", ()))
        if part.is_multipart() or part.get_content_maintype() == "text":
            continue
        data = part.get_content()
        out.append("part: %s|%s|%s|%s|%s" % (
            part.get_content_type(), part.get_content_disposition() or "",
            part.get_filename() or "", part.get("Content-ID", ""), data.hex()))
    out.append("defects: %d" % defects)
    sys.stdout.write("\n".join(out) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
