// Validates an AsyncAPI document with @asyncapi/parser (its schema and its
// ruleset, which checks each message's examples against its payload).
// Usage: node asyncapi.mjs <file or URL>. Exits 1 on any error-level
// diagnostic, printing every diagnostic.
import { readFile } from 'node:fs/promises';
import { Parser, DiagnosticSeverity } from '@asyncapi/parser';

const where = process.argv[2];
if (!where) {
  console.error('usage: node asyncapi.mjs <asyncapi.json file or URL>');
  process.exit(2);
}
const text = /^https?:/.test(where)
  ? await (await fetch(where)).text()
  : await readFile(where, 'utf8');

const { document, diagnostics } = await new Parser().parse(text);
const severity = ['error', 'warning', 'information', 'hint'];
for (const d of diagnostics) {
  console.log(`${severity[d.severity]} ${d.code} at ${d.path.join('.')}: ${d.message}`);
}
const errors = diagnostics.filter((d) => d.severity === DiagnosticSeverity.Error);
if (!document || errors.length > 0) {
  console.error(`asyncapi: ${where} is not valid (${errors.length} errors)`);
  process.exit(1);
}
const messages = document.allMessages().all().map((m) => m.id());
const channels = document.allChannels().all().map((c) => c.address());
console.log(`asyncapi: valid ${document.version()} document: channels ${channels.join(', ')}; ` +
  `${messages.length} messages: ${messages.join(', ')}`);
