#!/usr/bin/env node
// Checks rendered longctx manifests (the output of `kubectl kustomize`) offline:
//
//  1. Schemas: every object against the Kubernetes OpenAPI schema (kubernetes-models),
//     plus unknown fields (a misspelt key such as `livenesProbe` is not a schema
//     error, but Kubernetes would drop it silently); ServiceMonitor against the small
//     schema below.
//  2. Invariants: every container has liveness and readiness probes (native gRPC
//     readiness for the longctx services, on the plaintext --health_address port
//     when gRPC speaks TLS, since the kubelet's gRPC probes cannot), CPU and memory
//     limits, and runs as non-root (init containers, which cannot have probes, get
//     the rest); no Secret is inlined, and every key, certificate and token file a
//     flag names lies in a volume mounted from a Secret; Services, ServiceMonitor and
//     PDBs select pods that exist, through ports that exist.
//  3. Command lines: each container's final command line is built as the kubelet and
//     longctx-entrypoint would build it (env from ConfigMaps and the downward API,
//     $(VAR) expansion, the entrypoint run with LONGCTX_ENTRYPOINT_DRY_RUN=1, for
//     every StatefulSet ordinal). Every --flag must exist in that binary's --help,
//     container ports must match --listen_address / --metrics_address, worker
//     replicas must be a multiple of the group size, and the gateway's --workers and
//     everyone's --memory_store must list exactly the StatefulSets' pods.
//
// Usage:
//   node validate.js --entrypoint=deploy/docker/longctx-entrypoint.sh \
//       --flags=gateway=help:FILE [--flags=worker=source:main.cc ...] \
//       [--self-check] [--print-commands] NAME=RENDERED.yaml...
// --flags gives a binary's flags as the text of its `--helpfull` (help:) or as the
// ABSL_FLAG definitions of its main.cc (source:). --self-check also breaks each
// invariant on a copy of the first rendering and fails unless every break is caught.
// --print-commands prints every pod's final command lines.
// Prints one line per failure and a summary; exits 1 on any failure, 2 on bad usage.
'use strict';

const childProcess = require('child_process');
const fs = require('fs');
const path = require('path');
const YAML = require('yaml');

// ---------------------------------------------------------------------------------
// Flags of the binaries.

// Flags every absl binary accepts.
const ABSL_BUILTIN_FLAGS = [
  'flagfile', 'fromenv', 'tryfromenv', 'undefok', 'help', 'helpfull', 'helpshort',
  'helppackage', 'helpon', 'helpmatch', 'version', 'only_check_args',
];

// unquote turns a C string literal ("a\"b") into its text, close enough for defaults.
function unquote(literal) {
  try {
    return JSON.parse(literal);
  } catch (e) {
    return literal.slice(1, -1);
  }
}

// A FlagSet maps a flag name to {defaultValue, isBool}.
function flagsFromHelp(text) {
  const flags = new Map();
  // absl indents each flag by 4 spaces, its wrapped description lines by 6.
  const re = /^ {4}--([A-Za-z0-9_]+) \(/gm;
  const starts = [];
  let m;
  while ((m = re.exec(text)) !== null) starts.push({name: m[1], at: m.index});
  starts.forEach((s, i) => {
    const body = text.slice(s.at, i + 1 < starts.length ? starts[i + 1].at : text.length);
    const d = /default: ("(?:[^"\\]|\\.)*"|[^;\n]*);/.exec(body.replace(/\n\s*/g, ' '));
    let value = d ? d[1] : undefined;
    if (value !== undefined && value.startsWith('"')) value = unquote(value);
    flags.set(s.name, {defaultValue: value, isBool: value === 'true' || value === 'false'});
  });
  return flags;
}

function flagsFromSource(text) {
  const flags = new Map();
  for (const name of ABSL_BUILTIN_FLAGS) flags.set(name, {defaultValue: undefined, isBool: false});
  const re = /ABSL_FLAG\(\s*([^,]+?)\s*,\s*([A-Za-z0-9_]+)\s*,\s*("(?:[^"\\]|\\.)*")?/g;
  let m;
  while ((m = re.exec(text)) !== null) {
    const type = m[1].replace(/\s+/g, ' ');
    flags.set(m[2], {
      defaultValue: m[3] !== undefined ? unquote(m[3]) : undefined,
      isBool: type === 'bool',
    });
  }
  return flags;
}

// parseFlags turns argv[1..] into [{name, value, raw}] (value null for a bare
// --flag), reporting words that are not --name[=value] flags.
function parseFlags(words, flagSet, report) {
  const out = [];
  for (const raw of words) {
    const m = /^--?([A-Za-z0-9_]+)(?:=([\s\S]*))?$/.exec(raw);
    if (!m) {
      report(`"${raw}" is not a --flag=value (positional arguments are not accepted)`);
      continue;
    }
    let name = m[1];
    const value = m[2] === undefined ? null : m[2];
    if (flagSet && !flagSet.has(name) && name.startsWith('no') && value === null) {
      const positive = flagSet.get(name.slice(2));
      if (positive && positive.isBool) name = name.slice(2);
    }
    out.push({name, value, raw});
  }
  return out;
}

// flagValue: the last value given for `name`, else the --help default.
function flagValue(flags, flagSet, name) {
  let value;
  for (const f of flags) if (f.name === name) value = f.value === null ? 'true' : f.value;
  if (value === undefined && flagSet && flagSet.has(name)) value = flagSet.get(name).defaultValue;
  return value;
}

// Flags that name a key, certificate or token file: each must come from a Secret.
const SECRET_FILE_FLAGS = [
  'tls_cert', 'tls_key', 'tls_client_ca', 'internal_tls_ca', 'internal_tls_cert',
  'internal_tls_key', 'auth_tokens_file',
];

function portOf(address) {
  const m = /:(\d+)$/.exec(address || '');
  return m ? Number(m[1]) : undefined;
}

// ---------------------------------------------------------------------------------
// Quantities ("500m", "2Gi").

const QUANTITY_SUFFIX = {
  n: 1e-9, u: 1e-6, m: 1e-3, '': 1, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

function parseQuantity(q) {
  if (typeof q === 'number') return q;
  const m = /^([+-]?[0-9.]+(?:[eE][+-]?\d+)?)(n|u|m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$/.exec(String(q));
  if (!m) return NaN;
  return Number(m[1]) * QUANTITY_SUFFIX[m[2] || ''];
}

// ---------------------------------------------------------------------------------
// Schemas.

// FieldIndex: for every kubernetes-models interface, its properties and what each
// holds (another interface, an array or a map of one, or a scalar), read from the
// package's .d.ts files. kubernetes-models' validators accept unknown keys; this
// index is what rejects them.
class FieldIndex {
  constructor() {
    this.types = new Map();   // global type name -> Map(prop -> {kind, type})
    this.byFile = new Map();  // .d.ts path -> exported global interface name
    for (const pkg of ['kubernetes-models', '@kubernetes-models/apimachinery']) {
      const root = path.dirname(require.resolve(`${pkg}/package.json`));
      this.scan(root);
    }
  }

  scan(dir) {
    for (const entry of fs.readdirSync(dir, {withFileTypes: true})) {
      const p = path.join(dir, entry.name);
      if (entry.isDirectory()) {
        if (entry.name !== 'node_modules') this.scan(p);
      } else if (entry.name.endsWith('.d.ts')) {
        this.parse(p, fs.readFileSync(p, 'utf8'));
      }
    }
  }

  parse(file, text) {
    const aliases = new Map();
    for (const m of text.matchAll(/export \{([^}]*)\};/g)) {
      for (const part of m[1].split(',')) {
        const a = /^\s*(\w+) as (\w+)\s*$/.exec(part);
        if (a) aliases.set(a[1], a[2]);
      }
    }
    for (const m of text.matchAll(/^export interface (\w+)(?: extends [\w, ]+)? \{\n([\s\S]*?)^\}/gm)) {
      const global = aliases.get(m[1]);
      if (!global) continue;
      this.types.set(global, this.properties(m[2]));
      this.byFile.set(file, global);
    }
  }

  properties(body) {
    const props = new Map();
    // A property starts at 4 spaces of indentation with its quoted name; its type may
    // run over the following, deeper-indented lines.
    const lines = body.split('\n');
    for (let i = 0; i < lines.length; i++) {
      const m = /^ {4}"([^"]+)"\??: (.*)$/.exec(lines[i]);
      if (!m) continue;
      let type = m[2];
      while (i + 1 < lines.length && /^ {5,}/.test(lines[i + 1]) && !/^ {4}\S/.test(lines[i + 1])) {
        type += ' ' + lines[++i].trim();
      }
      type = type.replace(/;$/, '').trim();
      let t;
      if ((t = /^Array<(I\w+)>$/.exec(type))) props.set(m[1], {kind: 'array', type: t[1]});
      else if ((t = /^\{ \[key: string\]: (I\w+); \}$/.exec(type))) props.set(m[1], {kind: 'map', type: t[1]});
      else if ((t = /^(I\w+)$/.exec(type))) props.set(m[1], {kind: 'object', type: t[1]});
      else props.set(m[1], {kind: 'scalar'});
    }
    return props;
  }

  typeFor(apiVersion, kind) {
    let file;
    try {
      file = require.resolve(`kubernetes-models/${apiVersion}/${kind}`).replace(/\.js$/, '.d.ts');
    } catch (e) {
      return undefined;
    }
    return this.byFile.get(file);
  }

  // unknownFields reports every key of `value` that its type does not declare.
  unknownFields(value, typeName, where, report) {
    const props = this.types.get(typeName);
    if (!props || value === null || typeof value !== 'object' || Array.isArray(value)) return;
    for (const [key, child] of Object.entries(value)) {
      const prop = props.get(key);
      const at = `${where}.${key}`;
      if (!prop) {
        report(`${at}: unknown field (${typeName.replace(/^IIoK8s/, '')} has no "${key}")`);
        continue;
      }
      if (prop.kind === 'object') this.unknownFields(child, prop.type, at, report);
      if (prop.kind === 'array' && Array.isArray(child)) {
        child.forEach((c, i) => this.unknownFields(c, prop.type, `${at}[${i}]`, report));
      }
      if (prop.kind === 'map' && child && typeof child === 'object') {
        for (const [k, c] of Object.entries(child)) this.unknownFields(c, prop.type, `${at}.${k}`, report);
      }
    }
  }
}

// ServiceMonitor (monitoring.coreos.com/v1): kubernetes-models has no schema for this
// CRD, so its shape is checked here: the fields this project uses, typed, and keys
// limited to those of the Prometheus Operator's CRD.
const SERVICE_MONITOR_SPEC_KEYS = new Set([
  'attachMetadata', 'bodySizeLimit', 'endpoints', 'fallbackScrapeProtocol', 'jobLabel',
  'keepDroppedTargets', 'labelLimit', 'labelNameLengthLimit', 'labelValueLengthLimit',
  'namespaceSelector', 'nativeHistogramBucketLimit', 'nativeHistogramMinBucketFactor',
  'podTargetLabels', 'sampleLimit', 'scrapeClass', 'scrapeClassicHistograms',
  'scrapeProtocols', 'selector', 'selectorMechanism', 'targetLabels', 'targetLimit',
  'convertClassicHistogramsToNHCB',
]);
const SERVICE_MONITOR_ENDPOINT_KEYS = new Set([
  'authorization', 'basicAuth', 'bearerTokenFile', 'bearerTokenSecret', 'enableHttp2',
  'filterRunning', 'followRedirects', 'honorLabels', 'honorTimestamps', 'interval',
  'metricRelabelings', 'noProxy', 'oauth2', 'params', 'path', 'port', 'proxyConnectHeader',
  'proxyFromEnvironment', 'proxyUrl', 'relabelings', 'scheme', 'scrapeTimeout',
  'targetPort', 'tlsConfig', 'trackTimestampsStaleness',
]);
const DURATION = /^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$/;

function validateServiceMonitor(obj, report) {
  const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
  const stringMap = (v) => isObject(v) && Object.values(v).every((x) => typeof x === 'string');
  for (const key of Object.keys(obj)) {
    if (!['apiVersion', 'kind', 'metadata', 'spec'].includes(key)) report(`.${key}: unknown field`);
  }
  if (!isObject(obj.metadata) || typeof obj.metadata.name !== 'string') report('.metadata.name: required string');
  const spec = obj.spec;
  if (!isObject(spec)) return report('.spec: required object');
  for (const key of Object.keys(spec)) {
    if (!SERVICE_MONITOR_SPEC_KEYS.has(key)) report(`.spec.${key}: unknown field`);
  }
  if (!isObject(spec.selector)) report('.spec.selector: required object');
  else {
    for (const key of Object.keys(spec.selector)) {
      if (!['matchLabels', 'matchExpressions'].includes(key)) report(`.spec.selector.${key}: unknown field`);
    }
    if (spec.selector.matchLabels !== undefined && !stringMap(spec.selector.matchLabels)) {
      report('.spec.selector.matchLabels: must map strings to strings');
    }
  }
  for (const key of ['podTargetLabels', 'targetLabels']) {
    if (spec[key] !== undefined && !(Array.isArray(spec[key]) && spec[key].every((x) => typeof x === 'string'))) {
      report(`.spec.${key}: must be a list of strings`);
    }
  }
  if (spec.namespaceSelector !== undefined) {
    const ns = spec.namespaceSelector;
    if (!isObject(ns) || Object.keys(ns).some((k) => !['any', 'matchNames'].includes(k))) {
      report('.spec.namespaceSelector: only "any" and "matchNames" are allowed');
    }
  }
  if (!Array.isArray(spec.endpoints) || spec.endpoints.length === 0) {
    return report('.spec.endpoints: required, at least one endpoint');
  }
  spec.endpoints.forEach((e, i) => {
    const at = `.spec.endpoints[${i}]`;
    if (!isObject(e)) return report(`${at}: must be an object`);
    for (const key of Object.keys(e)) {
      if (!SERVICE_MONITOR_ENDPOINT_KEYS.has(key)) report(`${at}.${key}: unknown field`);
    }
    if (e.port === undefined && e.targetPort === undefined) report(`${at}: needs port (a Service port name) or targetPort`);
    if (e.port !== undefined && typeof e.port !== 'string') report(`${at}.port: must be a port name (string)`);
    if (e.path !== undefined && !(typeof e.path === 'string' && e.path.startsWith('/'))) report(`${at}.path: must start with /`);
    if (e.scheme !== undefined && !['http', 'https', 'HTTP', 'HTTPS'].includes(e.scheme)) report(`${at}.scheme: http or https`);
    for (const key of ['interval', 'scrapeTimeout']) {
      if (e[key] !== undefined && !(typeof e[key] === 'string' && DURATION.test(e[key]) && e[key] !== '')) {
        report(`${at}.${key}: must be a Prometheus duration such as 15s`);
      }
    }
  });
}

// ---------------------------------------------------------------------------------
// Objects of a rendering.

const WORKLOAD_KINDS = new Set(['Deployment', 'StatefulSet', 'DaemonSet', 'ReplicaSet', 'Job']);
const LONGCTX_SERVICES = new Set(['gateway', 'worker', 'memory_store']);
const ENTRYPOINT = 'longctx-entrypoint';

function describe(obj) {
  return `${obj.kind}/${(obj.metadata || {}).name}`;
}

function selectorMatches(selector, labels) {
  if (!selector) return false;
  const matchLabels = selector.matchLabels || selector;  // Service selectors are plain maps.
  const entries = Object.entries(matchLabels);
  if (entries.length === 0 && !(selector.matchExpressions || []).length) return false;
  if (!entries.every(([k, v]) => (labels || {})[k] === v)) return false;
  for (const e of selector.matchExpressions || []) {
    const has = Object.prototype.hasOwnProperty.call(labels || {}, e.key);
    const value = (labels || {})[e.key];
    if (e.operator === 'In' && !(has && e.values.includes(value))) return false;
    if (e.operator === 'NotIn' && has && e.values.includes(value)) return false;
    if (e.operator === 'Exists' && !has) return false;
    if (e.operator === 'DoesNotExist' && has) return false;
  }
  return true;
}

// expandVars does the kubelet's $(VAR) expansion ($$ escapes a $); references to
// variables that are not defined stay as they are.
function expandVars(text, env) {
  return String(text).replace(/\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)/g, (all, name) => {
    if (all === '$$') return '$';
    return Object.prototype.hasOwnProperty.call(env, name) ? env[name] : all;
  });
}

class Rendering {
  constructor(name, objects, options) {
    this.name = name;
    this.objects = objects;
    this.options = options;
    this.failures = [];
    this.failureKeys = new Set();
    this.notes = new Set();
    this.checks = 0;
    this.configMaps = new Map();
    for (const o of objects) {
      if (o.kind === 'ConfigMap') this.configMaps.set(o.metadata.name, o.data || {});
    }
  }

  // fail records a failure; the same one in several pods of a workload counts once.
  fail(where, message) {
    const text = `${where}: ${message}`;
    const key = text.replace(/ \(pod [^)]*\)/, '');
    if (this.failureKeys.has(key)) return;
    this.failureKeys.add(key);
    this.failures.push(text);
  }

  check(condition, where, message) {
    this.checks++;
    if (!condition) this.fail(where, message);
    return condition;
  }

  workloads() {
    return this.objects.filter((o) => WORKLOAD_KINDS.has(o.kind));
  }

  // Pod names to simulate: every ordinal of a StatefulSet, one made-up name otherwise.
  podNames(w) {
    if (w.kind === 'StatefulSet') {
      const n = w.spec.replicas === undefined ? 1 : w.spec.replicas;
      return Array.from({length: Math.max(n, 1)}, (_, i) => `${w.metadata.name}-${i}`);
    }
    return [`${w.metadata.name}-7d9f8c6b5-x2x7q`];
  }

  // run does every check; an object too malformed to check is a failure, not a crash.
  run() {
    try {
      this.runChecks();
    } catch (e) {
      this.fail(this.name, `checks stopped: ${e.stack || e}`);
    }
    return this;
  }

  runChecks() {
    this.validateSchemas();
    this.checkNoInlineSecrets();
    const commandLines = [];
    for (const w of this.workloads()) {
      const podSpec = ((w.spec || {}).template || {}).spec || {};
      for (const c of podSpec.containers || []) this.checkContainer(w, podSpec, c, false);
      for (const c of podSpec.initContainers || []) this.checkContainer(w, podSpec, c, true);
      for (const podName of this.podNames(w)) {
        for (const c of [...(podSpec.initContainers || []), ...(podSpec.containers || [])]) {
          const line = this.commandLine(w, podSpec, c, podName);
          if (line) commandLines.push(line);
        }
      }
      this.checkPdb(w);
    }
    for (const line of commandLines) this.checkCommandLine(line);
    this.commandLines = commandLines;
    this.checkServices();
    this.checkServiceMonitors();
    this.checkTopology(commandLines);
  }

  validateSchemas() {
    for (const obj of this.objects) {
      const where = describe(obj);
      if (!obj || typeof obj.apiVersion !== 'string' || typeof obj.kind !== 'string') {
        this.fail(where, 'apiVersion and kind are required');
        continue;
      }
      this.checks++;
      if (obj.apiVersion === 'monitoring.coreos.com/v1' && obj.kind === 'ServiceMonitor') {
        validateServiceMonitor(obj, (m) => this.fail(where, `schema (own ServiceMonitor schema): ${m}`));
        continue;
      }
      let Model;
      try {
        Model = require(`kubernetes-models/${obj.apiVersion}`)[obj.kind];
      } catch (e) {
        Model = undefined;
      }
      if (!Model) {
        this.fail(where, `no schema for ${obj.apiVersion} ${obj.kind} in kubernetes-models ${this.options.modelsVersion}`);
        continue;
      }
      try {
        new Model(obj).validate();
      } catch (e) {
        this.fail(where, `schema: ${String(e.message || e).split('\n').join('; ')}`);
      }
      const type = this.options.fieldIndex.typeFor(obj.apiVersion, obj.kind);
      if (!type) {
        this.notes.add(`unknown-field check skipped for ${obj.apiVersion} ${obj.kind}: no type declarations`);
        continue;
      }
      this.options.fieldIndex.unknownFields(obj, type, '', (m) => this.fail(where, `schema: ${m}`));
    }
  }

  checkNoInlineSecrets() {
    for (const obj of this.objects) {
      this.check(obj.kind !== 'Secret', describe(obj),
          'Secrets must not be part of the manifests; create them out of band and reference them by name');
    }
  }

  checkContainer(w, podSpec, c, isInit) {
    const where = `${describe(w)} ${isInit ? 'initContainer' : 'container'} ${c.name}`;
    const podSecurity = podSpec.securityContext || {};
    const security = c.securityContext || {};
    // Runs as non-root.
    const nonRoot = security.runAsNonRoot !== undefined ? security.runAsNonRoot : podSecurity.runAsNonRoot;
    const user = security.runAsUser !== undefined ? security.runAsUser : podSecurity.runAsUser;
    this.check(nonRoot === true, where, 'must run as non-root (securityContext.runAsNonRoot: true)');
    this.check(user === undefined || user !== 0, where, 'runAsUser must not be 0 (root)');
    this.check(security.privileged !== true, where, 'must not be privileged');
    this.check(security.allowPrivilegeEscalation === false, where,
        'securityContext.allowPrivilegeEscalation must be false');
    // Resource limits.
    const resources = c.resources || {};
    const limits = resources.limits || {};
    const requests = resources.requests || {};
    this.check(limits.cpu !== undefined && limits.memory !== undefined, where,
        'resources.limits must set cpu and memory');
    for (const [resource, request] of Object.entries(requests)) {
      if (limits[resource] !== undefined) {
        this.check(parseQuantity(request) <= parseQuantity(limits[resource]), where,
            `resources.requests.${resource} (${request}) exceeds its limit (${limits[resource]})`);
      }
    }
    if (isInit) return;
    // Probes.
    this.check(!!c.livenessProbe, where, 'has no livenessProbe');
    this.check(!!c.readinessProbe, where, 'has no readinessProbe');
    // GPUs: NCCL needs a real /dev/shm and to know its interface.
    if (limits['nvidia.com/gpu'] !== undefined) {
      const mount = (c.volumeMounts || []).find((m) => m.mountPath === '/dev/shm');
      const volume = mount && (podSpec.volumes || []).find((v) => v.name === mount.name);
      this.check(!!(volume && volume.emptyDir && volume.emptyDir.medium === 'Memory'), where,
          'a GPU container needs /dev/shm mounted from an emptyDir with medium: Memory');
      this.check((c.env || []).some((e) => e.name === 'NCCL_SOCKET_IFNAME'), where,
          'a GPU container needs NCCL_SOCKET_IFNAME');
    }
  }

  // resolveEnv builds the container's environment as the kubelet would.
  resolveEnv(w, podSpec, c, podName, where) {
    const env = {};
    for (const from of c.envFrom || []) {
      if (from.configMapRef) {
        const data = this.configMaps.get(from.configMapRef.name);
        if (!data) {
          if (!from.configMapRef.optional) this.fail(where, `envFrom ConfigMap ${from.configMapRef.name} is not in the manifests`);
          continue;
        }
        for (const [k, v] of Object.entries(data)) env[(from.prefix || '') + k] = v;
      }
    }
    const meta = ((w.spec || {}).template || {}).metadata || {};
    for (const e of c.env || []) {
      if (e.value !== undefined) {
        env[e.name] = expandVars(e.value, env);
        continue;
      }
      const from = e.valueFrom || {};
      if (from.configMapKeyRef) {
        const data = this.configMaps.get(from.configMapKeyRef.name);
        if (data && Object.prototype.hasOwnProperty.call(data, from.configMapKeyRef.key)) {
          env[e.name] = data[from.configMapKeyRef.key];
        } else if (!from.configMapKeyRef.optional) {
          this.fail(where, `env ${e.name}: ConfigMap key ${from.configMapKeyRef.name}/${from.configMapKeyRef.key} is not in the manifests`);
        }
      } else if (from.secretKeyRef) {
        env[e.name] = `<secret ${from.secretKeyRef.name}/${from.secretKeyRef.key}>`;
      } else if (from.fieldRef) {
        const field = from.fieldRef.fieldPath;
        const label = /^metadata\.labels\['(.+)'\]$/.exec(field);
        if (field === 'metadata.name') env[e.name] = podName;
        else if (field === 'metadata.namespace') env[e.name] = w.metadata.namespace || 'default';
        else if (label) env[e.name] = (meta.labels || {})[label[1]] || '';
        else env[e.name] = `<${field}>`;
      } else if (from.resourceFieldRef) {
        const ref = from.resourceFieldRef;
        const target = (podSpec.containers || []).concat(podSpec.initContainers || [])
            .find((x) => x.name === (ref.containerName || c.name));
        const [kind, resource] = ref.resource.split('.');
        const amount = target && ((target.resources || {})[kind] || {})[resource];
        if (amount === undefined) {
          this.fail(where, `env ${e.name}: ${ref.resource} of container ${ref.containerName || c.name} is not set`);
        } else {
          env[e.name] = String(Math.ceil(parseQuantity(amount) / parseQuantity(ref.divisor || '1')));
        }
      }
    }
    return env;
  }

  // commandLine: {workload, container, podName, binary, argv} as the process sees it.
  commandLine(w, podSpec, c, podName) {
    const where = `${describe(w)} container ${c.name} (pod ${podName})`;
    if (!c.command || c.command.length === 0) {
      this.fail(where, 'command must be set explicitly (the image entrypoint is not visible here)');
      return null;
    }
    const env = this.resolveEnv(w, podSpec, c, podName, where);
    let argv = c.command.concat(c.args || []).map((a) => expandVars(a, env));
    for (const a of argv) {
      this.check(!/\$\([A-Za-z_][A-Za-z0-9_]*\)/.test(a), where, `"${a}" refers to a variable the container does not define`);
    }
    if (path.basename(argv[0]) === ENTRYPOINT) {
      const result = childProcess.spawnSync('sh', [this.options.entrypoint, ...argv.slice(1)], {
        env: {...env, PATH: process.env.PATH, HOSTNAME: podName, LONGCTX_ENTRYPOINT_DRY_RUN: '1'},
        encoding: 'utf8',
      });
      if (!this.check(result.status === 0, where,
          `longctx-entrypoint fails: ${(result.stderr || String(result.error)).trim()}`)) {
        return null;
      }
      argv = result.stdout.replace(/\n$/, '').split('\n');
    }
    return {workload: w, container: c, podName, where, binary: path.basename(argv[0]), argv};
  }

  checkCommandLine(line) {
    const {container: c, where, binary} = line;
    const flagSet = this.options.flagSets.get(binary);
    if (!flagSet) {
      this.notes.add(LONGCTX_SERVICES.has(binary) || binary === 'make_tiny_model' ?
        `flags of ${binary} not checked: no --help or source given` :
        `flags of ${binary} not checked: not a longctx binary`);
    }
    line.flags = parseFlags(line.argv.slice(1), flagSet, (m) => this.fail(where, m));
    line.flagSet = flagSet;
    if (flagSet) {
      for (const f of line.flags) {
        this.check(flagSet.has(f.name), where, `${f.raw}: ${binary} has no flag --${f.name} (not in its --help)`);
      }
    }
    if (!LONGCTX_SERVICES.has(binary) || !flagSet) return;
    // Ports: the flags decide where the process listens; the manifest must agree.
    const ports = new Map((c.ports || []).map((p) => [p.name, p.containerPort]));
    const grpcPort = portOf(flagValue(line.flags, flagSet, 'listen_address'));
    const metricsPort = portOf(flagValue(line.flags, flagSet, 'metrics_address'));
    this.check(grpcPort !== undefined && ports.get('grpc') === grpcPort, where,
        `containerPort "grpc" (${ports.get('grpc')}) must be the --listen_address port (${grpcPort})`);
    this.check(metricsPort !== undefined && ports.get('metrics') === metricsPort, where,
        `containerPort "metrics" (${ports.get('metrics')}) must be the --metrics_address port (${metricsPort})`);
    // With TLS the kubelet's gRPC probes need the plaintext health-only port.
    const healthPort = portOf(flagValue(line.flags, flagSet, 'health_address'));
    const tls = !!flagValue(line.flags, flagSet, 'tls_cert');
    this.check(!tls || healthPort !== undefined, where,
        '--tls_cert without --health_address: the kubelet\'s gRPC probes cannot speak TLS; ' +
        'set --health_address and probe that port');
    if (healthPort !== undefined) {
      this.check(ports.get('health') === healthPort, where,
          `containerPort "health" (${ports.get('health')}) must be the --health_address port (${healthPort})`);
    }
    const probePort = healthPort !== undefined ? healthPort : grpcPort;
    const probeName = healthPort !== undefined ? 'health' : 'gRPC';
    const ready = c.readinessProbe || {};
    this.check(!!ready.grpc && ready.grpc.port === probePort, where,
        `readinessProbe must be a native gRPC probe on the ${probeName} port ${probePort}`);
    for (const kind of ['livenessProbe', 'startupProbe']) {
      const probe = c[kind];
      if (!probe) continue;
      if (probe.grpc) {
        this.check(probe.grpc.port === probePort, where,
            `${kind} must be a gRPC probe on the ${probeName} port ${probePort}, not ${JSON.stringify(probe.grpc.port)}`);
      } else {
        const port = probe.tcpSocket ? probe.tcpSocket.port : undefined;
        this.check(port === grpcPort || port === 'grpc' || (healthPort !== undefined && port === healthPort), where,
            `${kind} must probe the gRPC port ${grpcPort} (grpc or tcpSocket), not ${JSON.stringify(port)}`);
      }
    }
    // Keys, certificates and tokens come from Secret volumes, never the image.
    const podSpec = line.workload.spec.template.spec;
    for (const name of SECRET_FILE_FLAGS) {
      const file = flagValue(line.flags, flagSet, name);
      if (!file) continue;
      const mount = (c.volumeMounts || []).find((m) => file.startsWith(m.mountPath.replace(/\/$/, '') + '/'));
      const volume = mount && (podSpec.volumes || []).find((v) => v.name === mount.name);
      const fromSecret = !!volume && (!!volume.secret ||
          (!!volume.projected && (volume.projected.sources || []).some((s) => !!s.secret)));
      this.check(fromSecret, where, `--${name}=${file} is not in a volume mounted from a Secret`);
    }
    // Shutdown: the pod must outlive the process's drain.
    const grace = Number(flagValue(line.flags, flagSet, 'grace_period_seconds') || 0);
    const preStop = ((((c.lifecycle || {}).preStop || {}).exec || {}).command || []);
    const sleep = path.basename(preStop[0] || '') === 'sleep' ? Number(preStop[1]) || 0 : 0;
    const termination = podSpec.terminationGracePeriodSeconds === undefined ? 30 : podSpec.terminationGracePeriodSeconds;
    this.check(termination > grace + sleep, where,
        `terminationGracePeriodSeconds (${termination}) must exceed --grace_period_seconds (${grace}) + preStop sleep (${sleep})`);
    if (binary === 'worker') {
      const kv = Number(flagValue(line.flags, flagSet, 'kv_cache_bytes'));
      const memory = parseQuantity(((c.resources || {}).limits || {}).memory);
      this.check(!(kv >= memory), where, `--kv_cache_bytes=${kv} does not fit in the memory limit (${memory} bytes)`);
    }
  }

  // Services select existing pods through existing ports.
  checkServices() {
    for (const svc of this.objects.filter((o) => o.kind === 'Service')) {
      const where = describe(svc);
      const pods = this.workloads().filter((w) => selectorMatches((svc.spec || {}).selector, w.spec.template.metadata.labels));
      if (!this.check(pods.length > 0, where, 'its selector matches no workload in the manifests')) continue;
      for (const port of (svc.spec || {}).ports || []) {
        const target = port.targetPort === undefined ? port.port : port.targetPort;
        const found = pods.every((w) => w.spec.template.spec.containers.some((c) => (c.ports || []).some(
            (p) => (typeof target === 'string' ? p.name === target : p.containerPort === target))));
        this.check(found, where, `port ${port.name}: targetPort ${target} is not a container port of the selected pods`);
      }
    }
    for (const sts of this.objects.filter((o) => o.kind === 'StatefulSet')) {
      const svc = this.objects.find((o) => o.kind === 'Service' && o.metadata.name === sts.spec.serviceName);
      this.check(!!svc && svc.spec.clusterIP === 'None' &&
          selectorMatches(svc.spec.selector, sts.spec.template.metadata.labels), describe(sts),
          `serviceName ${sts.spec.serviceName} must be a headless Service (clusterIP: None) selecting its pods`);
    }
  }

  checkServiceMonitors() {
    for (const sm of this.objects.filter((o) => o.kind === 'ServiceMonitor')) {
      const where = describe(sm);
      const services = this.objects.filter((o) => o.kind === 'Service' && selectorMatches((sm.spec || {}).selector, o.metadata.labels));
      if (!this.check(services.length > 0, where, 'its selector matches no Service')) continue;
      for (const e of (sm.spec || {}).endpoints || []) {
        if (typeof e.port !== 'string') continue;
        this.check(services.some((s) => (s.spec.ports || []).some((p) => p.name === e.port)), where,
            `endpoint port "${e.port}" is not a port of the selected Services`);
      }
      for (const w of this.workloads()) {
        if (!w.spec.template.spec.containers.some((c) => (c.ports || []).some((p) => p.name === 'metrics'))) continue;
        const scraped = services.some((s) => selectorMatches(s.spec.selector, w.spec.template.metadata.labels) &&
            (s.spec.ports || []).some((p) => p.name === 'metrics'));
        this.check(scraped, where, `${describe(w)} exposes metrics but no selected Service has a "metrics" port for it`);
      }
    }
  }

  checkPdb(w) {
    const pdbs = this.objects.filter((o) => o.kind === 'PodDisruptionBudget' &&
        selectorMatches(o.spec.selector, w.spec.template.metadata.labels));
    if (w.kind === 'Job') return;
    this.check(pdbs.length === 1, describe(w), `needs exactly one PodDisruptionBudget selecting its pods (found ${pdbs.length})`);
  }

  // Worker groups, --workers and --memory_store.
  checkTopology(lines) {
    const of = (binary) => lines.filter((l) => l.binary === binary && l.flags);
    const workers = of('worker');
    const gateways = of('gateway');
    const stores = of('memory_store');
    const single = (ls, what) => {
      const names = [...new Set(ls.map((l) => l.workload.metadata.name))];
      if (names.length > 1) this.fail(this.name, `more than one ${what} workload: ${names.join(', ')}`);
      return ls.length ? ls[0].workload : undefined;
    };
    const workerSts = single(workers, 'worker');
    const storeSts = single(stores, 'memory_store');
    const gatewayDep = single(gateways, 'gateway');
    // A workload whose command line could not be built has been reported already.
    const runs = (binary) => this.workloads().some((w) => w.spec.template.spec.containers.some(
        (c) => (c.command || []).concat(c.args || []).some((x) => path.basename(x) === binary)));
    for (const binary of ['gateway', 'worker']) {
      this.check(runs(binary), this.name, `the manifests need a workload running ${binary}`);
    }
    if (!workerSts) return;
    const where = describe(workerSts);
    this.check(workerSts.kind === 'StatefulSet', where, 'workers must be a StatefulSet (stable ranks)');
    const replicas = workerSts.spec.replicas === undefined ? 1 : workerSts.spec.replicas;
    // Group size and ranks, as each worker pod will see them.
    const sizes = new Set(workers.map((l) => Number(flagValue(l.flags, l.flagSet, 'group_size'))));
    const groupSize = sizes.size === 1 ? [...sizes][0] : NaN;
    this.check(sizes.size === 1, where, `worker pods disagree on --group_size: ${[...sizes].join(', ')}`);
    this.check(Number.isInteger(groupSize) && groupSize >= 1 && replicas % groupSize === 0, where,
        `worker replicas (${replicas}) must be a multiple of the group size (${groupSize})`);
    const seen = new Set();
    for (const l of workers) {
      const rank = Number(flagValue(l.flags, l.flagSet, 'rank'));
      const group = flagValue(l.flags, l.flagSet, 'group_id');
      const key = `${group}/${rank}`;
      this.check(rank >= 0 && rank < groupSize && !seen.has(key), l.where,
          `rank ${rank} of ${group} is out of range or taken twice (group size ${groupSize})`);
      seen.add(key);
    }
    // The gateway lists every rank, group after group, at the worker's gRPC port.
    const workerPort = portOf(flagValue(workers[0].flags, workers[0].flagSet, 'listen_address'));
    const expectWorkers = this.addresses(workerSts, workerPort);
    for (const l of gateways) {
      this.check(Number(flagValue(l.flags, l.flagSet, 'group_size')) === groupSize, l.where,
          `gateway --group_size must equal the workers' (${groupSize})`);
      this.checkAddressList(l, 'workers', expectWorkers);
    }
    if (groupSize > 1 && gatewayDep) {
      const gatewayReplicas = gatewayDep.spec.replicas === undefined ? 1 : gatewayDep.spec.replicas;
      this.check(gatewayReplicas === 1, describe(gatewayDep),
          'with groups of more than one rank, run one gateway replica: the ranks of a group must meet in one Rendezvous');
    }
    // Everyone who talks to memory_store lists the same shards, in the same order.
    if (storeSts) {
      this.check(storeSts.kind === 'StatefulSet', describe(storeSts), 'memory_store must be a StatefulSet (one PVC per shard)');
      this.check((storeSts.spec.volumeClaimTemplates || []).length > 0, describe(storeSts),
          'memory_store needs a volumeClaimTemplate for its data');
      const storePort = portOf(flagValue(stores[0].flags, stores[0].flagSet, 'listen_address'));
      const expectStores = this.addresses(storeSts, storePort);
      for (const l of [...gateways, ...workers]) this.checkAddressList(l, 'memory_store', expectStores);
    }
  }

  // addresses: host:port of every pod of a StatefulSet behind its headless Service,
  // as regular expressions (the namespace suffix is optional).
  addresses(sts, port) {
    const n = sts.spec.replicas === undefined ? 1 : sts.spec.replicas;
    const esc = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    return Array.from({length: n}, (_, i) => ({
      text: `${sts.metadata.name}-${i}.${sts.spec.serviceName}:${port}`,
      re: new RegExp(`^${esc(sts.metadata.name)}-${i}\\.${esc(sts.spec.serviceName)}` +
          `(\\.[a-z0-9-]+\\.svc(\\.[a-z0-9.-]+)?)?:${port}$`),
    }));
  }

  checkAddressList(line, flag, expected) {
    const value = flagValue(line.flags, line.flagSet, flag) || '';
    const got = value === '' ? [] : value.split(',');
    const ok = got.length === expected.length && got.every((a, i) => expected[i].re.test(a));
    this.check(ok, line.where, `--${flag}=${value} must list ${expected.length} address(es): ` +
        `${expected.map((e) => e.text).join(',')} (namespace suffix optional)`);
  }
}

// ---------------------------------------------------------------------------------
// Self-check: each mutation breaks one invariant; the checks must notice.

function clone(objects) {
  return JSON.parse(JSON.stringify(objects));
}

function find(objects, kind, predicate) {
  const o = objects.find((x) => x.kind === kind && predicate(x));
  if (!o) throw new Error(`self-check: no ${kind} to mutate`);
  return o;
}

function containerRunning(objects, binary) {
  for (const w of objects.filter((o) => WORKLOAD_KINDS.has(o.kind))) {
    for (const c of w.spec.template.spec.containers) {
      const words = (c.command || []).concat(c.args || []);
      if (words.some((x) => path.basename(x) === binary)) return {w, c};
    }
  }
  throw new Error(`self-check: no container runs ${binary}`);
}

const MUTATIONS = [
  {name: 'worker without readinessProbe', expect: /no readinessProbe/,
    apply: (o) => { delete containerRunning(o, 'worker').c.readinessProbe; }},
  {name: 'gateway without limits', expect: /resources\.limits must set cpu and memory/,
    apply: (o) => { delete containerRunning(o, 'gateway').c.resources.limits; }},
  {name: 'memory_store as root', expect: /non-root/,
    apply: (o) => {
      const {w, c} = containerRunning(o, 'memory_store');
      c.securityContext.runAsNonRoot = false;
      w.spec.template.spec.securityContext.runAsNonRoot = false;
    }},
  {name: '3 workers in groups of 2', expect: /multiple of the group size/,
    apply: (o) => {
      find(o, 'ConfigMap', (x) => 'LONGCTX_GROUP_SIZE' in (x.data || {})).data.LONGCTX_GROUP_SIZE = '2';
      const {w} = containerRunning(o, 'worker');
      w.spec.replicas = 3;
      for (const c of containerRunning(o, 'gateway').w.spec.template.spec.containers) {
        for (const e of c.env || []) if (e.name === 'LONGCTX_WORKER_REPLICAS') e.value = '4';
      }
    }},
  {name: 'a flag the binary lacks', expect: /has no flag --no_such_flag/,
    apply: (o) => { containerRunning(o, 'memory_store').c.args.push('--no_such_flag=1'); }},
  {name: 'container port that is not --listen_address', expect: /must be the --listen_address port/,
    apply: (o) => {
      const {c} = containerRunning(o, 'worker');
      c.ports.find((p) => p.name === 'grpc').containerPort += 1;
    }},
  {name: 'gateway --workers missing a rank', expect: /--workers=.* must list/,
    apply: (o) => {
      const {c} = containerRunning(o, 'gateway');
      const e = c.env.find((x) => x.name === 'LONGCTX_WORKER_REPLICAS');
      e.value = String(Number(e.value) - 1);
    }},
  {name: 'misspelt field', expect: /unknown field/,
    apply: (o) => {
      const {c} = containerRunning(o, 'worker');
      c.livenesProbe = c.livenessProbe;
    }},
  {name: 'wrong type', expect: /schema: .*must be integer/,
    apply: (o) => { containerRunning(o, 'gateway').c.ports[0].containerPort = 'fifty'; }},
  {name: 'TLS without a plaintext health port', expect: /--tls_cert without --health_address/,
    apply: (o) => {
      const {c} = containerRunning(o, 'memory_store');
      c.args = c.args.filter((a) => !a.startsWith('--health_address='));
    }},
  {name: 'readiness probe on the TLS port', expect: /readinessProbe must be a native gRPC probe on the health port/,
    apply: (o) => {
      const {c} = containerRunning(o, 'worker');
      c.readinessProbe.grpc.port = c.ports.find((p) => p.name === 'grpc').containerPort;
    }},
  {name: 'token file outside its Secret volume', expect: /--auth_tokens_file=.* is not in a volume mounted from a Secret/,
    apply: (o) => {
      const {c} = containerRunning(o, 'gateway');
      c.args = c.args.map((a) => a.replace(/^--auth_tokens_file=.*/, '--auth_tokens_file=/tmp/tokens'));
    }},
  {name: 'inlined Secret', expect: /Secrets must not be part of the manifests/,
    apply: (o) => { o.push({apiVersion: 'v1', kind: 'Secret', metadata: {name: 'longctx-auth'}, stringData: {token: 'x'}}); }},
];

function selfCheck(rendering, options) {
  const missed = [];
  for (const m of MUTATIONS) {
    const objects = clone(rendering.objects);
    m.apply(objects);
    const failures = new Rendering(`${rendering.name}+${m.name}`, objects, options).run().failures;
    if (!failures.some((f) => m.expect.test(f))) {
      missed.push(`self-check: "${m.name}" went unnoticed (wanted ${m.expect}; got ${failures.length} other failure(s)${failures.length ? ': ' + failures[0] : ''})`);
    }
  }
  return missed;
}

// ---------------------------------------------------------------------------------

function main(argv) {
  const options = {flagSets: new Map(), entrypoint: undefined, selfCheck: false};
  const renders = [];
  for (const arg of argv) {
    let m;
    if ((m = /^--entrypoint=(.+)$/.exec(arg))) options.entrypoint = m[1];
    else if ((m = /^--flags=([a-z_]+)=(help|source):(.+)$/.exec(arg))) {
      const text = fs.readFileSync(m[3], 'utf8');
      const flags = m[2] === 'help' ? flagsFromHelp(text) : flagsFromSource(text);
      if (flags.size === 0) {
        console.error(`validate.js: no flags found in ${m[3]} (${m[2]} of ${m[1]})`);
        return 2;
      }
      options.flagSets.set(m[1], flags);
    } else if (arg === '--self-check') options.selfCheck = true;
    else if (arg === '--print-commands') options.printCommands = true;
    else if ((m = /^([^=]+)=(.+\.ya?ml)$/.exec(arg))) renders.push({name: m[1], file: m[2]});
    else {
      console.error(`validate.js: unknown argument ${arg}`);
      return 2;
    }
  }
  if (!options.entrypoint || renders.length === 0) {
    console.error('usage: node validate.js --entrypoint=PATH --flags=BINARY=help|source:FILE... [--self-check] NAME=FILE.yaml...');
    return 2;
  }
  options.fieldIndex = new FieldIndex();
  options.modelsVersion = require('kubernetes-models/package.json').version;

  let failed = 0;
  const rendered = [];
  for (const r of renders) {
    const docs = YAML.parseAllDocuments(fs.readFileSync(r.file, 'utf8'));
    const errors = docs.flatMap((d) => d.errors.map((e) => e.message));
    if (errors.length) {
      console.log(`FAIL ${r.name}: YAML: ${errors.join('; ')}`);
      failed++;
      continue;
    }
    const objects = docs.map((d) => d.toJSON()).filter((o) => o !== null);
    const rendering = new Rendering(r.name, objects, options).run();
    rendered.push(rendering);
    if (options.printCommands) {
      for (const l of rendering.commandLines) console.log(`     ${r.name}: pod ${l.podName} ${l.container.name}: ${l.argv.join(' ')}`);
    }
    for (const f of rendering.failures) console.log(`FAIL ${r.name}: ${f}`);
    for (const n of rendering.notes) console.log(`note ${r.name}: ${n}`);
    const kinds = [...new Set(objects.map((o) => o.kind))].sort().join(', ');
    console.log(`${rendering.failures.length ? 'FAIL' : 'ok  '} ${r.name}: ${objects.length} objects (${kinds}), ` +
        `${rendering.checks} checks, ${rendering.failures.length} failed`);
    failed += rendering.failures.length;
  }
  if (options.selfCheck && rendered.length) {
    const missed = selfCheck(rendered[0], options);
    for (const m of missed) console.log(`FAIL ${m}`);
    console.log(`${missed.length ? 'FAIL' : 'ok  '} self-check: ${MUTATIONS.length - missed.length} of ` +
        `${MUTATIONS.length} deliberate breaks of ${rendered[0].name} caught`);
    failed += missed.length;
  }
  return failed ? 1 : 0;
}

module.exports = {flagsFromHelp, flagsFromSource, parseQuantity, expandVars};
if (require.main === module) process.exitCode = main(process.argv.slice(2));
