// Validates Kubernetes manifests against the API schemas of kubernetes-models
// (and KEDA's for ScaledObject), one YAML file or more: prints every
// document as one JSON line {file, kind, name, object} when all are valid,
// else the errors, and exits 1.
//
//   node t/deploy/validate.mjs deploy/kubernetes/*.yaml

import fs from 'node:fs';
import yaml from 'js-yaml';

const models = {
  'v1/ConfigMap': 'kubernetes-models/v1/ConfigMap',
  'v1/Secret': 'kubernetes-models/v1/Secret',
  'v1/Service': 'kubernetes-models/v1/Service',
  'apps/v1/Deployment': 'kubernetes-models/apps/v1/Deployment',
  'policy/v1/PodDisruptionBudget': 'kubernetes-models/policy/v1/PodDisruptionBudget',
  'keda.sh/v1alpha1/ScaledObject': '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject',
};

let failed = 0;
const out = [];

for (const file of process.argv.slice(2)) {
  let docs;
  try {
    docs = yaml.loadAll(fs.readFileSync(file, 'utf8'));
  } catch (e) {
    console.error(`${file}: not YAML: ${e.message}`);
    failed++;
    continue;
  }
  for (const doc of docs.filter(Boolean)) {
    const key = `${doc.apiVersion}/${doc.kind}`;
    if (doc.kind === 'Kustomization') {
      out.push({ file, kind: doc.kind, name: null, object: doc });
      continue;
    }
    const path = models[key];
    if (!path) {
      console.error(`${file}: ${key} has no schema here`);
      failed++;
      continue;
    }
    const mod = await import(path);
    const Model = mod[doc.kind] || mod.default;
    try {
      new Model(doc).validate();
      out.push({ file, kind: doc.kind, name: doc.metadata && doc.metadata.name, object: doc });
    } catch (e) {
      console.error(`${file}: ${key} ${doc.metadata && doc.metadata.name}: ${e.message}`);
      failed++;
    }
  }
}

if (failed) process.exit(1);
for (const o of out) console.log(JSON.stringify(o));
