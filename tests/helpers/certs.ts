/**
 * Certificates for the TLS tests, made with `openssl` at test time (nothing secret is committed): a CA, a
 * server certificate for localhost / 127.0.0.1 signed by it, client certificates (valid, expired, and one
 * signed by a second CA the broker does not trust). All are X.509 v3 with the extensions a strict verifier
 * (rustls / webpki) insists on: basicConstraints, keyUsage, extendedKeyUsage, key identifiers. Keys are
 * ECDSA P-256 in PKCS#8, which every client under test (OpenSSL, Node, rustls) reads.
 *
 * The PEMs are generated once per test process ({@linkcode tlsFiles} starts it lazily and caches it) in a
 * temporary directory removed as soon as they are read. Each test then gets its own directory of files
 * with `await using files = await tlsFiles()`, removed when the test ends.
 */

/** One certificate and its private key, PEM. */
export interface KeyPair {
  readonly cert: string;
  readonly key: string;
}

/** Everything generated, as PEM text. */
export interface CertPems {
  /** The CA the broker trusts (ca_file). */
  readonly ca: KeyPair;
  /** CN=localhost, subjectAltName DNS:localhost, IP:127.0.0.1, serverAuth; signed by `ca`. */
  readonly server: KeyPair;
  /** CN={@linkcode CLIENT_CN}, clientAuth; signed by `ca`. */
  readonly client: KeyPair;
  /** CN={@linkcode EXPIRED_CN}, clientAuth, signed by `ca`, valid only during 2020. */
  readonly expiredClient: KeyPair;
  /** A second CA, which the broker does not trust. */
  readonly otherCa: KeyPair;
  /** CN={@linkcode UNTRUSTED_CN}, clientAuth, signed by `otherCa`. */
  readonly untrustedClient: KeyPair;
}

/** The subject CN of the valid client certificate: what use_identity_as_username makes the username. */
export const CLIENT_CN = "sensor-17";
export const EXPIRED_CN = "sensor-expired";
export const UNTRUSTED_CN = "sensor-untrusted";

/** Absolute paths of the PEM files of one key pair. */
export interface KeyPairFiles {
  readonly cert: string;
  readonly key: string;
}

/** One test's copy of the PEMs as files, in a directory of its own that disposing removes. */
export interface TlsFiles extends AsyncDisposable {
  readonly dir: string;
  readonly pems: CertPems;
  readonly ca: KeyPairFiles;
  readonly server: KeyPairFiles;
  readonly client: KeyPairFiles;
  readonly expiredClient: KeyPairFiles;
  readonly otherCa: KeyPairFiles;
  readonly untrustedClient: KeyPairFiles;
  /** Writes another file (a broken certificate, say) into the directory; returns its absolute path. */
  write(name: string, text: string): Promise<string>;
}

export interface TlsFilesOptions {
  /**
   * Where to make the directory: the system temp dir by default. `deno task start` may read only under the
   * working directory, so a test of the CLI passes `Deno.cwd()`.
   */
  parent?: string;
}

let generated: Promise<CertPems> | undefined;

/** The PEMs of this test process, generated on first use. */
export function certPems(): Promise<CertPems> {
  // A failed generation is not cached, so each test reports it rather than the first only.
  return generated ??= generateCertPems().catch((error) => {
    generated = undefined;
    throw error;
  });
}

/** Writes the PEMs into a fresh directory (absolute paths), removed on dispose. */
export async function tlsFiles(options: TlsFilesOptions = {}): Promise<TlsFiles> {
  const pems = await certPems();
  const dir = await Deno.realPath(
    await Deno.makeTempDir({ dir: options.parent, prefix: ".vyoma-tls-test-" }),
  );
  try {
    const write = async (name: string, text: string) => {
      const path = `${dir}/${name}`;
      await Deno.writeTextFile(path, text);
      return path;
    };
    const pair = async (name: string, { cert, key }: KeyPair): Promise<KeyPairFiles> => ({
      cert: await write(`${name}.pem`, cert),
      key: await write(`${name}.key`, key),
    });
    return {
      dir,
      pems,
      ca: await pair("ca", pems.ca),
      server: await pair("server", pems.server),
      client: await pair("client", pems.client),
      expiredClient: await pair("expired-client", pems.expiredClient),
      otherCa: await pair("other-ca", pems.otherCa),
      untrustedClient: await pair("untrusted-client", pems.untrustedClient),
      write,
      [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }),
    };
  } catch (error) {
    await Deno.remove(dir, { recursive: true });
    throw error;
  }
}

/** The extension sections, and the bookkeeping `openssl ca` needs for the expired certificate. */
function opensslConfig(dir: string): string {
  return `
[ req ]
distinguished_name = dn
prompt = no

[ dn ]
CN = unused

[ ca ]
default_ca = expired_ca

[ expired_ca ]
database = ${dir}/index.txt
new_certs_dir = ${dir}
serial = ${dir}/serial
default_md = sha256
policy = any_name
unique_subject = no
copy_extensions = none
email_in_dn = no

[ any_name ]
commonName = supplied

[ v3_ca ]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash

[ v3_server ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectAltName = DNS:localhost, IP:127.0.0.1
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer

[ v3_client ]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid, issuer
`;
}

async function openssl(dir: string, args: string[]): Promise<void> {
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("openssl", { args, cwd: dir, stdin: "null" }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new Error("openssl is not installed; the TLS tests generate their certificates with it");
    }
    throw error;
  }
  if (output.code !== 0) {
    throw new Error(
      `openssl ${args.join(" ")} exited with ${output.code}: ${new TextDecoder().decode(output.stderr)}`,
    );
  }
}

/** A random positive 64-bit serial number, in the hex form openssl's -set_serial takes. */
function serial(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(8));
  bytes[0] &= 0x7f;
  bytes[0] |= 0x10;
  return `0x${[...bytes].map((b) => b.toString(16).padStart(2, "0")).join("")}`;
}

/** Generates every certificate in a temporary directory, reads them, and removes the directory. */
export async function generateCertPems(): Promise<CertPems> {
  const dir = await Deno.makeTempDir({ prefix: "vyoma-certs-" });
  try {
    await Deno.writeTextFile(`${dir}/openssl.cnf`, opensslConfig(dir));
    await Deno.writeTextFile(`${dir}/index.txt`, "");
    await Deno.writeTextFile(`${dir}/serial`, "1000\n");
    const config = ["-config", "openssl.cnf"];
    const newKey = (name: string) =>
      openssl(dir, [
        "genpkey",
        ...["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", `${name}.key`],
      ]);
    const selfSignedCa = async (name: string, cn: string) => {
      await newKey(name);
      await openssl(dir, [
        ...["req", ...config, "-x509", "-new", "-sha256", "-key", `${name}.key`, "-subj", `/CN=${cn}`],
        ...["-days", "3650", "-set_serial", serial(), "-extensions", "v3_ca", "-out", `${name}.pem`],
      ]);
    };
    const request = async (name: string, cn: string) => {
      await newKey(name);
      await openssl(dir, [
        ...["req", ...config, "-new", "-sha256", "-key", `${name}.key`, "-subj", `/CN=${cn}`],
        ...["-out", `${name}.csr`],
      ]);
    };
    const signed = async (name: string, cn: string, ca: string, extensions: string) => {
      await request(name, cn);
      await openssl(dir, [
        ...["x509", "-req", "-sha256", "-in", `${name}.csr`, "-CA", `${ca}.pem`, "-CAkey", `${ca}.key`],
        ...["-set_serial", serial(), "-days", "3650", "-extfile", "openssl.cnf", "-extensions", extensions],
        ...["-out", `${name}.pem`],
      ]);
    };

    // The two CAs first (each certificate below needs its issuer), then the rest side by side.
    await Promise.all([selfSignedCa("ca", "Vyoma Test CA"), selfSignedCa("other-ca", "Untrusted Test CA")]);
    await Promise.all([
      signed("server", "localhost", "ca", "v3_server"),
      signed("client", CLIENT_CN, "ca", "v3_client"),
      signed("untrusted-client", UNTRUSTED_CN, "other-ca", "v3_client"),
      (async () => {
        // OpenSSL 3.0's `x509 -req` cannot set a past validity period; `openssl ca` can.
        await request("expired-client", EXPIRED_CN);
        await openssl(dir, [
          ...["ca", ...config, "-batch", "-notext", "-md", "sha256", "-cert", "ca.pem", "-keyfile", "ca.key"],
          ...["-startdate", "20200101000000Z", "-enddate", "20201231000000Z", "-extensions", "v3_client"],
          ...["-in", "expired-client.csr", "-out", "expired-client.pem"],
        ]);
      })(),
    ]);

    const read = async (name: string): Promise<KeyPair> => ({
      cert: await Deno.readTextFile(`${dir}/${name}.pem`),
      key: await Deno.readTextFile(`${dir}/${name}.key`),
    });
    return {
      ca: await read("ca"),
      server: await read("server"),
      client: await read("client"),
      expiredClient: await read("expired-client"),
      otherCa: await read("other-ca"),
      untrustedClient: await read("untrusted-client"),
    };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
