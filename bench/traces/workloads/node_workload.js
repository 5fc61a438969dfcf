// A small JSON and string workload for capturing node's allocation trace.
const records = [];
for (let i = 0; i < 20000; i++) {
  records.push({
    id: i,
    name: `item-${i}`,
    tags: [`t${i % 7}`, `u${i % 13}`],
    score: (i * 37) % 101,
  });
}
const text = JSON.stringify(records);
const parsed = JSON.parse(text);
const byTag = new Map();
for (const r of parsed) for (const t of r.tags) byTag.set(t, (byTag.get(t) ?? 0) + r.score);
const lines = [...byTag].sort((a, b) => b[1] - a[1]).map(([t, s]) => `${t}\t${s}`);
require("node:zlib").gzipSync(Buffer.from(text));
console.log(lines.slice(0, 5).join("\n"), text.length);
