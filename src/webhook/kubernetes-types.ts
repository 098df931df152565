// The few Kubernetes API shapes the webhook reads and writes, with the API's own field names (core/v1
// Pod, Container, Volume). Only what we use; the tests validate every patched pod against the Kubernetes
// schema with unknown fields refused, so a misspelt field here cannot reach a cluster.

export interface ContainerPort {
  name?: string;
  containerPort: number;
  protocol?: 'TCP' | 'UDP' | 'SCTP';
}

export interface HttpGetProbe {
  httpGet: { path: string; port: string | number };
  periodSeconds?: number;
  timeoutSeconds?: number;
  failureThreshold?: number;
}

export interface VolumeMount {
  name: string;
  mountPath: string;
  readOnly?: boolean;
}

export interface SecurityContext {
  runAsNonRoot?: boolean;
  runAsUser?: number;
  runAsGroup?: number;
  readOnlyRootFilesystem?: boolean;
  allowPrivilegeEscalation?: boolean;
  privileged?: boolean;
  capabilities?: { drop?: string[] };
  seccompProfile?: { type: 'RuntimeDefault' };
}

export interface Container {
  name: string;
  image?: string;
  imagePullPolicy?: string;
  /** `Always` on an init container makes it a native sidecar (Kubernetes 1.29+). */
  restartPolicy?: 'Always';
  args?: string[];
  env?: { name: string; value: string }[];
  ports?: ContainerPort[];
  startupProbe?: HttpGetProbe;
  readinessProbe?: HttpGetProbe;
  livenessProbe?: HttpGetProbe;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: SecurityContext;
  volumeMounts?: VolumeMount[];
  terminationMessagePolicy?: 'File' | 'FallbackToLogsOnError';
}

export interface Volume {
  name: string;
  csi?: { driver: string; readOnly?: boolean };
  secret?: { secretName: string };
  configMap?: { name: string };
  projected?: {
    sources: (
      | { serviceAccountToken: { audience: string; expirationSeconds: number; path: string } }
      | { configMap: { name: string; items: { key: string; path: string }[] } }
    )[];
  };
}

/** A Pod as the webhook receives it: untrusted JSON, so every field is optional until checked. */
export interface Pod {
  metadata?: { name?: string; generateName?: string; namespace?: string; annotations?: Record<string, unknown> };
  spec?: {
    hostNetwork?: boolean;
    os?: { name?: unknown };
    containers?: Partial<Container>[];
    initContainers?: Partial<Container>[];
    ephemeralContainers?: Partial<Container>[];
    volumes?: Partial<Volume>[];
  };
}
