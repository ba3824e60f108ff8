// Self-signed certificates for the simulated HTTPS bag hosts (init.push.apple.com, …), one per name,
// made at lab start: a device that verifies one proves its TLS session reached that name's server.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { systemTool } from '../src/core/tools.js';
import { run } from './proc.js';

/** Absolute path of openssl (scripts/setup.sh installs it for the lab and the tests). */
export const OPENSSL = systemTool('openssl');

/** A name's certificate (PEM; also what a client trusts) and its private key. */
export interface Cert { readonly name: string; readonly cert: string; readonly key: string }

/** Makes `<dir>/<name>.crt` and `.key`: EC P-256, CN and subjectAltName DNS:<name>, valid one day. */
export async function makeCert(dir: string, name: string): Promise<Cert> {
  if (!/^[a-z0-9.-]+$/.test(name)) throw new Error(`lab: no certificate for the name ${name}`);
  await mkdir(dir, { recursive: true });
  const cert = path.join(dir, `${name}.crt`);
  const key = path.join(dir, `${name}.key`);
  await run(OPENSSL, ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1',
    '-subj', `/CN=${name}`, '-addext', `subjectAltName=DNS:${name}`, '-keyout', key, '-out', cert]);
  return { name, cert, key };
}
