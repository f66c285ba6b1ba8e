#!/usr/bin/env node
// validate.mjs - validates JSON documents against api-spec/openapi.yaml with ajv.
//
// Owns: turning the spec's schemas (OpenAPI 3.1 = JSON Schema 2020-12) into
// ajv validators, finding the schema for a real HTTP answer from the spec's
// `paths` (path template, method, status, media type), and reporting every
// mismatch. It must never hold its own copy of a schema or skip a check it
// cannot make: an undocumented route, method, status or media type is a
// failure, like a body that does not match.
//
// Usage: node tests/spec/validate.mjs [--spec api-spec/openapi.yaml] [--quiet]
// Reads JSON lines on stdin, one document each, and answers each line at
// once with one line on stdout, "ok <label>" or "FAIL <label>: <errors>"
// (so a test can keep one process open and ask line by line). Exit status 1
// when any line failed, 2 on a broken spec or unreadable input line.
// Line forms:
//   {"schema":"Message","data":{...}}            a components/schemas entry
//   {"webhook":"message.failed","data":{...}}    a webhooks request body
//   {"request":{"method":"GET","path":"/v1/messages/msg_...","status":200,
//               "content_type":"application/json"},"data":{...}}
//       the response schema the spec documents for that answer; path is the
//       real request path (query ignored), matched against the spec's path
//       templates (literal segments win over {params}); data null = no body.
//   {"check":"spec"}                              compile every schema only
// Optional "label" on any line is echoed in the answer.

import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

import Ajv2020 from 'ajv/dist/2020.js';
import addFormats from 'ajv-formats';
import yaml from 'js-yaml';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const SPEC_ID = 'https://txmail.invalid/openapi.json';
const MAX_LINE = 64 * 1024 * 1024;

function parseArgs(argv) {
	const out = { spec: path.join(HERE, '..', '..', 'api-spec', 'openapi.yaml'), quiet: false };
	for (let i = 0; i < argv.length; i++) {
		if (argv[i] === '--spec' && i + 1 < argv.length) out.spec = argv[++i];
		else if (argv[i] === '--quiet') out.quiet = true;
		else {
			process.stderr.write(`validate.mjs: unknown argument ${argv[i]}\n`);
			process.exit(2);
		}
	}
	return out;
}

function loadSpec(file) {
	const doc = yaml.load(fs.readFileSync(file, 'utf8'));
	if (!doc || typeof doc !== 'object' || !String(doc.openapi || '').startsWith('3.1.'))
		throw new Error(`${file}: not an OpenAPI 3.1 document`);
	return doc;
}

// The spec document is registered as one schema resource (not itself
// validated as a schema), so a JSON pointer reaches any schema in it, under
// components, paths or webhooks, and local refs ("#/components/schemas/X")
// resolve inside it as they do for OpenAPI tools.
function makeAjv(spec) {
	const ajv = new Ajv2020({ allErrors: true, strict: true, strictTypes: false, strictRequired: false });
	addFormats(ajv);
	// OpenAPI's own keywords inside schemas are annotations for ajv.
	ajv.addVocabulary(['discriminator', 'xml', 'externalDocs', 'example']);
	// the document's containers, so the root compiles to "anything"; the schemas
	// inside them are reached by JSON pointer, each compiled strictly
	ajv.addVocabulary(['components', 'paths', 'webhooks']);
	ajv.addSchema({ $id: SPEC_ID, components: spec.components, paths: spec.paths, webhooks: spec.webhooks },
		undefined, undefined, false);
	return ajv;
}

const cache = new Map();

function resolvePointer(doc, ptr) {
	let node = doc;
	for (const raw of ptr.split('/').slice(1)) {
		const part = raw.replace(/~1/g, '/').replace(/~0/g, '~');
		if (node === null || typeof node !== 'object' || !(part in node)) return undefined;
		node = node[part];
	}
	return node;
}

function deref(node) {
	let guard = 0;
	while (node && typeof node === 'object' && typeof node.$ref === 'string' && guard++ < 16) {
		if (!node.$ref.startsWith('#/')) throw new Error(`non-local $ref ${node.$ref}`);
		node = resolvePointer(SPEC, node.$ref.slice(1));
	}
	return node;
}

// The spec's path templates that match reqPath, best first (more literal
// segments win: /v1/messages/batch before /v1/messages/{id}).
function matchPaths(spec, reqPath) {
	const segs = reqPath.split('?')[0].split('/');
	const out = [];
	for (const tmpl of Object.keys(spec.paths || {})) {
		const t = tmpl.split('/');
		if (t.length !== segs.length) continue;
		let score = 0;
		let ok = true;
		for (let i = 0; i < t.length; i++) {
			if (/^\{[^}]+\}$/.test(t[i])) {
				if (segs[i] === '') { ok = false; break; }
			} else if (t[i] === segs[i]) {
				score++;
			} else { ok = false; break; }
		}
		if (ok) out.push([score, tmpl]);
	}
	return out.sort((a, b) => b[0] - a[0]).map((x) => x[1]);
}

// -> { pointer } of the schema to use, { none: true } for a documented
// bodiless answer, or { error }
function responseSchema(spec, req) {
	const method = String(req.method || '').toLowerCase();
	const tmpls = matchPaths(spec, String(req.path || ''));
	if (tmpls.length === 0) return { error: `path ${req.path} is not in the spec` };
	const tmpl = tmpls.find((t) => spec.paths[t][method]);
	if (!tmpl) return { error: `${method.toUpperCase()} ${tmpls[0]} is not in the spec` };
	const item = spec.paths[tmpl];
	const responses = item[method].responses || {};
	const status = String(req.status);
	let key = null;
	if (status in responses) key = status;
	else if (`${status[0]}XX` in responses) key = `${status[0]}XX`;
	else if ('default' in responses) key = 'default';
	if (key === null)
		return { error: `status ${status} is not documented for ${method.toUpperCase()} ${tmpl} (have ${Object.keys(responses).join(', ')})` };
	let ptr = `/paths/${tmpl.replace(/~/g, '~0').replace(/\//g, '~1')}/${method}/responses/${key}`;
	let resp = responses[key];
	if (resp.$ref) { ptr = resp.$ref.slice(1); resp = deref(resp); }
	const content = resp.content || {};
	const ctype = String(req.content_type || '').split(';')[0].trim().toLowerCase();
	if (Object.keys(content).length === 0) return { none: true, where: `${method.toUpperCase()} ${tmpl} ${status}` };
	if (!(ctype in content))
		return { error: `${method.toUpperCase()} ${tmpl} ${status}: content type "${ctype}" not documented (have ${Object.keys(content).join(', ')})` };
	const media = content[ctype];
	if (!media.schema) return { none: true, where: `${method.toUpperCase()} ${tmpl} ${status}`, anyBody: true };
	return { pointer: `${ptr}/content/${ctype.replace(/~/g, '~0').replace(/\//g, '~1')}/schema`, where: `${method.toUpperCase()} ${tmpl} ${status}` };
}

function fmtErrors(errors) {
	return errors.map((e) => {
		const at = e.instancePath === '' ? '$' : `$${e.instancePath}`;
		const extra = e.params && e.params.additionalProperty ? ` '${e.params.additionalProperty}'`
			: e.params && e.params.allowedValues ? ` ${JSON.stringify(e.params.allowedValues)}` : '';
		return `${at} ${e.message}${extra}`;
	}).join('; ');
}

const args = parseArgs(process.argv.slice(2));
let SPEC;
let ajv;
try {
	SPEC = loadSpec(args.spec);
	ajv = makeAjv(SPEC);
} catch (e) {
	process.stderr.write(`validate.mjs: cannot load the spec: ${e.message}\n`);
	process.exit(2);
}

function compilePointer(ptr) {
	let v = cache.get(ptr);
	if (v) return v;
	v = ajv.getSchema(`${SPEC_ID}#${ptr}`);
	if (!v) throw new Error(`no schema at #${ptr}`);
	cache.set(ptr, v);
	return v;
}

function handle(obj) {
	let label = obj.label !== undefined ? String(obj.label) : '';
	if (obj.check === 'spec') {
		for (const name of Object.keys(SPEC.components.schemas)) compilePointer(`/components/schemas/${name}`);
		return { ok: true, label: label || 'spec' };
	}
	let ptr;
	let where;
	if (typeof obj.schema === 'string') {
		if (!(obj.schema in SPEC.components.schemas)) return { ok: false, label, why: `no components.schemas.${obj.schema}` };
		ptr = `/components/schemas/${obj.schema}`;
		where = obj.schema;
	} else if (typeof obj.webhook === 'string') {
		const item = (SPEC.webhooks || {})[obj.webhook];
		if (!item || !item.post) return { ok: false, label, why: `no webhooks.${obj.webhook}` };
		ptr = `/webhooks/${obj.webhook}/post/requestBody/content/application~1json/schema`;
		where = `webhook ${obj.webhook}`;
	} else if (obj.request && typeof obj.request === 'object') {
		const r = responseSchema(SPEC, obj.request);
		if (!label) label = `${obj.request.method} ${obj.request.path} ${obj.request.status}`;
		if (r.error) return { ok: false, label, why: r.error };
		if (r.none) {
			const empty = obj.data === null || obj.data === undefined || obj.data === '';
			if (empty || r.anyBody) return { ok: true, label };
			return { ok: false, label, why: `the spec documents no body for ${r.where}, got one` };
		}
		ptr = r.pointer;
		where = r.where;
	} else {
		return { ok: false, label, why: 'line has none of schema/webhook/request/check' };
	}
	const v = compilePointer(ptr);
	if (v(obj.data)) return { ok: true, label: label || where };
	return { ok: false, label: label || where, why: fmtErrors(v.errors || []) };
}

let failed = 0;
let broken = false;
const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
	if (line.trim() === '') continue;
	let res;
	if (line.length > MAX_LINE) {
		res = { ok: false, label: '', why: 'line too long' };
		broken = true;
	} else {
		try {
			res = handle(JSON.parse(line));
		} catch (e) {
			res = { ok: false, label: '', why: `bad input or spec: ${e.message}` };
			broken = true;
		}
	}
	if (res.ok) {
		if (!args.quiet) process.stdout.write(`ok ${res.label}\n`);
		else process.stdout.write('ok\n');
	} else {
		failed++;
		process.stdout.write(`FAIL ${res.label}: ${res.why}\n`);
	}
}
process.exit(broken ? 2 : failed ? 1 : 0);
