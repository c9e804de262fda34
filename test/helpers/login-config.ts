/** The OIDCLogin document of the login tests: client `web` of the test IdP, secret in `client-secret`. */
export function oidcLoginYaml(issuer: string, appHost: string, scopes: readonly string[], rest: string): string {
  return `apiVersion: obo-authz.dev/v1alpha1
kind: OIDCLogin
metadata: {name: web, namespace: istio-system}
spec:
  issuer: ${issuer}
  clientId: web
  clientSecretFile: client-secret
  appUrl: https://${appHost}
  scopes: [${scopes.join(', ')}]
${rest}`;
}
