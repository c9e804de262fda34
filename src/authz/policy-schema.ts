/**
 * The shape of an AuthorizationPolicy document (security.istio.io v1/v1beta1): raw types
 * and the schema that parses them, field by field as Istio's API defines them. What the
 * values mean is compiled in compile.ts and conditions.ts.
 */
import { list, obj, str, type Schema } from '../config/schema.js';

export type Action = 'ALLOW' | 'DENY' | 'AUDIT' | 'CUSTOM';

export interface RawSource {
  principals?: string[];
  notPrincipals?: string[];
  requestPrincipals?: string[];
  notRequestPrincipals?: string[];
  namespaces?: string[];
  notNamespaces?: string[];
  serviceAccounts?: string[];
  notServiceAccounts?: string[];
  trustDomains?: string[];
  notTrustDomains?: string[];
  ipBlocks?: string[];
  notIpBlocks?: string[];
  remoteIpBlocks?: string[];
  notRemoteIpBlocks?: string[];
}
export interface RawOperation {
  hosts?: string[];
  notHosts?: string[];
  ports?: string[];
  notPorts?: string[];
  methods?: string[];
  notMethods?: string[];
  paths?: string[];
  notPaths?: string[];
}
export interface RawCondition {
  key: string;
  values?: string[];
  notValues?: string[];
}
export interface RawRule {
  from?: { source: RawSource }[];
  to?: { operation: RawOperation }[];
  when?: RawCondition[];
}
export interface RawSpec {
  selector?: unknown;
  targetRef?: unknown;
  targetRefs?: unknown;
  action?: Action;
  provider?: { name?: string };
  rules?: RawRule[];
}

/** Values are non-empty strings (Istio CheckEmptyValues: "empty value not allowed"). */
const value = str({ nonEmpty: true });
/** Ports are strings in Istio's API; a bare YAML number gets a hint rather than a bare type error. */
const portValue: Schema<string> = {
  typeName: 'string',
  parse(v, path, ctx) {
    if (typeof v === 'number') {
      ctx.error(path, `expected a string, got number (quote it: "${v}")`);
      return undefined;
    }
    return value.parse(v, path, ctx);
  },
};
const values = list(value);

export const SOURCE_FIELDS = [
  'principals',
  'notPrincipals',
  'requestPrincipals',
  'notRequestPrincipals',
  'namespaces',
  'notNamespaces',
  'serviceAccounts',
  'notServiceAccounts',
  'trustDomains',
  'notTrustDomains',
  'ipBlocks',
  'notIpBlocks',
  'remoteIpBlocks',
  'notRemoteIpBlocks',
] as const;
export const OPERATION_FIELDS = ['hosts', 'notHosts', 'ports', 'notPorts', 'methods', 'notMethods', 'paths', 'notPaths'] as const;

const sourceSchema = obj<RawSource>(Object.fromEntries(SOURCE_FIELDS.map((f) => [f, values])));
const operationSchema = obj<RawOperation>(
  Object.fromEntries(OPERATION_FIELDS.map((f) => [f, f === 'ports' || f === 'notPorts' ? list(portValue) : values])),
);
const conditionSchema = obj<RawCondition>({ key: str({ nonEmpty: true }), values: list(portOrString()), notValues: list(portOrString()) }, { required: ['key'] });
export const ruleSchema = obj<RawRule>({
  from: list(obj({ source: sourceSchema }, { required: ['source'] })),
  to: list(obj({ operation: operationSchema }, { required: ['operation'] })),
  when: list(conditionSchema),
});
export const specSchema = obj<RawSpec>({
  // selector/targetRef(s) are validated by parseScope (src/config/scope.ts).
  selector: { typeName: 'mapping', parse: (v) => v },
  targetRef: { typeName: 'mapping', parse: (v) => v },
  targetRefs: { typeName: 'list', parse: (v) => v },
  action: str({ enum: ['ALLOW', 'DENY', 'AUDIT', 'CUSTOM'] }) as Schema<Action>,
  provider: obj({ name: str() }),
  rules: list(ruleSchema),
});

/** Condition values are strings; destination.port values written as numbers get the same hint as ports. */
function portOrString(): Schema<string> {
  return portValue;
}
