/** A Dockerfile read the way BuildKit reads it: stages, instructions, exec-form arguments, the final stage's ENV. */

export interface Instr {
  cmd: string;
  args: string;
}
export interface Stage {
  name: string;
  instrs: Instr[];
}

export function parseDockerfile(text: string): Stage[] {
  const instrs: Instr[] = [];
  let buf = '';
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\r$/, '');
    if (/^\s*#/.test(line)) continue; // comments, also inside continuations (as BuildKit does)
    if (buf === '' && line.trim() === '') continue;
    if (/\\\s*$/.test(line)) {
      buf += line.replace(/\\\s*$/, ' ');
      continue;
    }
    buf += line;
    const m = /^\s*(\w+)\s*(.*)$/s.exec(buf);
    if (m) instrs.push({ cmd: m[1]!.toUpperCase(), args: m[2]!.trim() });
    buf = '';
  }
  const stages: Stage[] = [];
  for (const i of instrs) {
    if (i.cmd === 'FROM') {
      const m = /\s+AS\s+(\S+)\s*$/i.exec(i.args);
      stages.push({ name: m ? m[1]! : String(stages.length), instrs: [] });
    } else stages[stages.length - 1]?.instrs.push(i);
  }
  return stages;
}

export function execForm(args: string): string[] | undefined {
  if (!args.startsWith('[')) return undefined;
  try {
    const v = JSON.parse(args);
    return Array.isArray(v) ? v.map(String) : undefined;
  } catch {
    return undefined;
  }
}

/** ENV of the final stage (NAME=value pairs). */
export function imageEnv(dockerfile: string): Record<string, string> {
  const stages = parseDockerfile(dockerfile);
  const env: Record<string, string> = {};
  for (const i of stages[stages.length - 1]?.instrs ?? []) {
    if (i.cmd !== 'ENV') continue;
    for (const m of i.args.matchAll(/(\w+)=(\S+)/g)) env[m[1]!] = m[2]!;
  }
  return env;
}

/** The final stage's ENTRYPOINT, CMD and HEALTHCHECK command (exec form), and its ENV. */
export function imageRun(dockerfile: string): { entrypoint: string[]; cmd: string[]; healthcheck: string[]; env: Record<string, string> } {
  const stages = parseDockerfile(dockerfile);
  const final = stages[stages.length - 1]!;
  const last = (c: string) => [...final.instrs].reverse().find((i) => i.cmd === c)?.args ?? '';
  return {
    entrypoint: execForm(last('ENTRYPOINT')) ?? [],
    cmd: execForm(last('CMD')) ?? [],
    healthcheck: execForm(last('HEALTHCHECK').replace(/^(--\S+\s+)*CMD\s+/, '')) ?? [],
    env: imageEnv(dockerfile),
  };
}
