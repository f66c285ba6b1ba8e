"""test_api_templates.py - stored templates (issue 3, point 3).

Owns: PUT (201 created / 200 replaced), GET, GET list, DELETE (204, then
404); the verification-code template of the README end to end through the
SMTP peer: `{{var}}` HTML-escaped in html and plain in subject/text,
`{{{var}}}` raw, non-ASCII variables; a missing variable -> 422 naming it;
an unknown template -> 422. Every answer is validated against the spec.

Must never: wait without a deadline.
"""
from helpers import dl

VERIFY = {
    "subject": "{{code}} is your {{product}} code",
    "text": "Hi {{name}},\n\nyour code is {{code}}. It expires in 10 minutes.\n",
    "html": "<p>Hi {{name}},</p><p>your code is <b>{{code}}</b>.</p>{{{footer}}}",
}


def test_crud(capi):
    r = capi.put_json("/v1/templates/verification-code", VERIFY)
    assert r.status == 201, "got %r, want 201" % r
    assert r.json["name"] == "verification-code", "got %r" % r.json
    r = capi.put_json("/v1/templates/verification-code", dict(VERIFY, subject="v2 {{code}}"))
    assert r.status == 200, "got %r, want 200 (replaced)" % r
    r = capi.get("/v1/templates/verification-code")
    assert r.status == 200 and r.json["subject"] == "v2 {{code}}", "got %r" % r
    assert r.json["html"] == VERIFY["html"] and r.json["text"] == VERIFY["text"], "got %r" % r.json
    assert capi.put_json("/v1/templates/another", {"text": "x"}).status == 201
    r = capi.get("/v1/templates")
    names = [t["name"] for t in r.json["data"]]
    assert names == ["another", "verification-code"], "got %r, want sorted names" % names
    assert capi.delete("/v1/templates/another").status == 204
    assert capi.get("/v1/templates/another").status == 404
    assert capi.delete("/v1/templates/another").status == 404
    for name, body in [("bad name!", {"text": "x"}), ("ok", {"text": "{{unclosed"}), ("ok", {"other": "x"}),
                       ("ok", {"text": 5})]:
        r = capi.put_json("/v1/templates/" + name.replace(" ", "%20"), body)
        assert r.status in (404, 422), "PUT %r %r: got %r, want 422 (or 404 for a bad name)" % (name, body, r)


def test_verification_code_end_to_end(capi, smtp_peer, webhook):
    assert capi.put_json("/v1/templates/verification-code", VERIFY).status == 201
    variables = {"code": "482913", "name": "Ada <script>&\"'", "product": "Acme 验证",
                 "footer": "<hr><i>raw footer</i>"}
    r = capi.send({"from": "Acme <noreply@acme.example>", "to": "ada@example.com",
                   "template": "verification-code", "variables": variables, "ttl": 600,
                   "metadata": {"user": "u42"}})
    assert r.status == 202, "got %r" % r
    mid = r.json["id"]
    m = smtp_peer.wait_for_rcpt("ada@example.com", dl(15))[0].msg
    assert str(m["subject"]) == "482913 is your Acme 验证 code", "got subject %r" % str(m["subject"])
    text = m.get_body(preferencelist=("plain",)).get_content()
    html = m.get_body(preferencelist=("html",)).get_content()
    assert "Hi Ada <script>&\"',\n" in text.replace("\r\n", "\n"), "got text %r, want the name unescaped" % text
    assert "your code is 482913." in text, "got text %r" % text
    assert "<p>Hi Ada &lt;script&gt;&amp;&quot;&#39;,</p>" in html or \
           "<p>Hi Ada &lt;script&gt;&amp;&quot;&#x27;,</p>" in html, "got html %r, want the name escaped" % html
    assert "<b>482913</b>" in html, "got html %r" % html
    assert html.rstrip().endswith("<hr><i>raw footer</i>"), "got html %r, want {{{footer}}} raw" % html
    r = capi.get("/v1/messages/" + mid)
    assert r.status == 200 and r.json["subject"] == "482913 is your Acme 验证 code", "got %r" % r.json
    webhook.wait_events_for(mid, 1, dl(15), types=("message.delivered",))


def test_missing_variable_and_unknown_template(capi, smtp_peer):
    assert capi.put_json("/v1/templates/verification-code", VERIFY).status == 201
    r = capi.send({"from": "a@example.com", "to": "x@example.com", "template": "verification-code",
                   "variables": {"code": "1", "name": "n", "footer": ""}})
    assert r.status == 422, "got %r, want 422" % r
    err = r.json["error"]
    assert "product" in err["field"] or "product" in err["message"], "got %r, want the missing variable named" % err
    r = capi.send({"from": "a@example.com", "to": "x@example.com", "template": "no-such-template"})
    assert r.status == 422 and r.json["error"]["field"] == "template", "got %r" % r
    r = capi.send({"from": "a@example.com", "to": "x@example.com", "template": "verification-code",
                   "subject": "both", "variables": {}})
    assert r.status == 422 and r.json["error"]["field"] == "subject", "got %r, want subject refused" % r
    r = capi.post_json("/v1/messages/batch", {"messages": [
        {"from": "a@example.com", "to": "x@example.com", "text": "fine"},
        {"from": "a@example.com", "to": "x@example.com", "template": "verification-code", "variables": {}}]})
    assert r.status == 422 and r.json["error"]["field"].startswith("messages[1]."), "got %r" % r
    assert smtp_peer.count() == 0, "got %d deliveries, want none" % smtp_peer.count()
