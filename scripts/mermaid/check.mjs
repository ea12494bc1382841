// Parses each Mermaid document given as a file argument with mermaid's own parser (jsdom stands in for
// the browser it expects) and prints one JSON line per file: {"file", "ok", "type" | "error"}.
// Exits 1 when any document does not parse.
import { readFile } from "node:fs/promises";
import { JSDOM } from "jsdom";

const dom = new JSDOM("<!doctype html><html><body></body></html>");
globalThis.window = dom.window;
globalThis.document = dom.window.document;
const { default: mermaid } = await import("mermaid");
mermaid.initialize({ startOnLoad: false });

for (const file of process.argv.slice(2)) {
  const text = await readFile(file, "utf8");
  try {
    const parsed = await mermaid.parse(text);
    console.log(JSON.stringify({ file, ok: true, type: parsed.diagramType }));
  } catch (error) {
    console.log(JSON.stringify({ file, ok: false, error: String(error?.message ?? error) }));
    process.exitCode = 1;
  }
}
