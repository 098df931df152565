// Loads @peculiar/x509 the one way it works: its dependency injection (tsyringe) needs the
// reflect-metadata polyfill loaded first, and it signs and verifies with Node's WebCrypto.
// Every module imports the library from here, never directly.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(webcrypto as unknown as Crypto);

export { x509 };
