/** PLACEHOLDER (owned by the token-exchange work, issue 5): built-in STS HTTP endpoints. */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { CompiledConfig } from '../config/compile.js';
import type { Runtime } from '../pipeline/runtime.js';

export async function handleStsHttp(_req: IncomingMessage, _res: ServerResponse, _cfg: CompiledConfig | null, _runtime: Runtime): Promise<boolean> {
  return false;
}
