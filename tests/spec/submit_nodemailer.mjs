// submit_nodemailer.mjs - one message sent through txmail's SMTP submission
// listener with nodemailer (npm), the client tests/integration/test_submission.py
// drives: a real third-party SMTP client, not ours.
//
// Usage: node submit_nodemailer.mjs JOB.json   (the API key in $SMTP_PASS)
//   JOB.json: {"host", "port", "secure": bool (true: implicit TLS, 465 style;
//              false: STARTTLS required, 587 style), "ca": PEM file the server's
//              certificate is verified against, "message": nodemailer's message
//              object, with each attachments[i].content_b64 turned into a Buffer}
// Prints one JSON line: {"response", "messageId", "accepted", "rejected"} and
// exits 0; on an error prints {"error", "code", "responseCode", "response"} and
// exits 1.
//
// Must never: print the password, or accept a certificate the CA did not sign.
import { readFileSync } from "node:fs";
import nodemailer from "nodemailer";

const job = JSON.parse(readFileSync(process.argv[2], "utf8"));
const transport = nodemailer.createTransport({
  host: job.host,
  port: job.port,
  secure: job.secure,
  requireTLS: !job.secure,
  auth: { user: "txmail", pass: process.env.SMTP_PASS },
  tls: { ca: [readFileSync(job.ca)], rejectUnauthorized: true },
  connectionTimeout: 10_000,
  greetingTimeout: 10_000,
  socketTimeout: 20_000,
});
const message = job.message;
for (const a of message.attachments || []) {
  if (a.content_b64 !== undefined) {
    a.content = Buffer.from(a.content_b64, "base64");
    delete a.content_b64;
  }
}
try {
  const info = await transport.sendMail(message);
  console.log(JSON.stringify({ response: info.response, messageId: info.messageId,
    accepted: info.accepted, rejected: info.rejected }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e.message), code: e.code, responseCode: e.responseCode,
    response: e.response }));
  process.exitCode = 1;
} finally {
  transport.close();
}
