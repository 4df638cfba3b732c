// The official TypeScript SDK's side of the cross-implementation test (crates/chain/tests/ts_sdk.rs).
//   node sdk.mjs sign MESSAGE     one fresh key per scheme signs MESSAGE; prints a JSON line each
//   node sdk.mjs verify           reads JSON lines {message, signature, address} on stdin and
//                                 prints {"ok": true} or {"ok": false, "error": "..."} for each
import { Ed25519Keypair } from '@mysten/sui/keypairs/ed25519';
import { Secp256k1Keypair } from '@mysten/sui/keypairs/secp256k1';
import { Secp256r1Keypair } from '@mysten/sui/keypairs/secp256r1';
import { verifyPersonalMessageSignature } from '@mysten/sui/verify';
import { createInterface } from 'node:readline';

const enc = new TextEncoder();
const [mode, message] = process.argv.slice(2);

if (mode === 'sign') {
  for (const [scheme, Kp] of [['ed25519', Ed25519Keypair], ['secp256k1', Secp256k1Keypair], ['secp256r1', Secp256r1Keypair]]) {
    const kp = Kp.generate();
    const { signature } = await kp.signPersonalMessage(enc.encode(message));
    console.log(JSON.stringify({ scheme, suiprivkey: kp.getSecretKey(), address: kp.toSuiAddress(), signature }));
  }
} else if (mode === 'verify') {
  for await (const line of createInterface({ input: process.stdin })) {
    if (!line.trim()) continue;
    const { message, signature, address } = JSON.parse(line);
    try {
      await verifyPersonalMessageSignature(enc.encode(message), signature, { address });
      console.log(JSON.stringify({ ok: true }));
    } catch (e) {
      console.log(JSON.stringify({ ok: false, error: String(e.message ?? e) }));
    }
  }
} else {
  console.error('usage: node sdk.mjs sign MESSAGE | verify');
  process.exit(2);
}
