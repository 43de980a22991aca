// Validates the prometheus-operator documents of YAML streams against the CRD schemas.
//
// Usage: node validate.mjs FILE...   ("-" reads standard input)
// Prints "OK <kind> <name>" or "INVALID <kind> <name> <reason>" per document of a known kind and
// exits 1 when any is invalid, or when no file held a single document of a known kind (so an empty
// render cannot pass). Other kinds are left to kubernetes-validate.
import { readFileSync } from "node:fs";
import * as yaml from "js-yaml";
import { PodMonitor, PrometheusRule, ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const kinds = { PodMonitor, PrometheusRule, ServiceMonitor };
let checked = 0;
let invalid = 0;
for (const file of process.argv.slice(2)) {
  const text = readFileSync(file === "-" ? 0 : file, "utf8");
  for (const doc of yaml.loadAll(text)) {
    if (!doc || doc.apiVersion !== "monitoring.coreos.com/v1" || !(doc.kind in kinds)) continue;
    checked += 1;
    const name = doc.metadata?.name ?? "?";
    try {
      new kinds[doc.kind](doc).validate();
      console.log(`OK ${doc.kind} ${name}`);
    } catch (err) {
      invalid += 1;
      console.log(`INVALID ${doc.kind} ${name} ${err.message}`);
    }
  }
}
if (checked === 0) {
  console.log("NONE no ServiceMonitor, PodMonitor or PrometheusRule found");
  process.exit(1);
}
process.exit(invalid === 0 ? 0 : 1);
