// AdmissionReview admission.k8s.io/v1 in and out. The request is checked for the fields we rely on;
// the response echoes its uid and carries either a base64 JSONPatch or a denial with a message.
import type { InjectDecision } from './inject.js';
import type { Pod } from './kubernetes-types.js';

export interface PodAdmissionRequest {
  uid: string;
  /** False when the review is not a pod CREATE: the webhook then answers "allowed", unchanged. */
  isPodCreate: boolean;
  namespace: string;
  pod: Pod;
}

function isObject(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

/** The request, or why the body is not an AdmissionReview we can answer (the HTTP answer is then 400). */
export function parseAdmissionReview(body: unknown): PodAdmissionRequest | { malformed: string } {
  if (!isObject(body) || body.apiVersion !== 'admission.k8s.io/v1' || body.kind !== 'AdmissionReview')
    return { malformed: 'not an admission.k8s.io/v1 AdmissionReview' };
  const request = body.request;
  if (!isObject(request)) return { malformed: 'no request' };
  const { uid, kind, operation, namespace, object } = request;
  if (typeof uid !== 'string' || uid.length === 0 || uid.length > 256) return { malformed: 'no request.uid' };
  const isPod = isObject(kind) && kind.group === '' && kind.version === 'v1' && kind.kind === 'Pod';
  const isPodCreate = isPod && operation === 'CREATE' && request.subResource === undefined;
  if (isPodCreate && !isObject(object)) return { malformed: 'no request.object' };
  if (isPodCreate && (typeof namespace !== 'string' || namespace === '')) return { malformed: 'no request.namespace' };
  return { uid, isPodCreate, namespace: typeof namespace === 'string' ? namespace : '', pod: (object ?? {}) as Pod };
}

/** The AdmissionReview to send back for a decision (or for a request we do not mutate). */
export function admissionResponse(uid: string, decision: InjectDecision | undefined): object {
  const response: Record<string, unknown> = { uid, allowed: decision?.kind !== 'deny' };
  if (decision?.kind === 'patch') {
    response.patchType = 'JSONPatch';
    response.patch = Buffer.from(JSON.stringify(decision.patch)).toString('base64');
  } else if (decision?.kind === 'deny') {
    response.status = { status: 'Failure', code: 400, reason: 'BadRequest', message: decision.message };
  }
  if (decision?.kind !== 'deny' && decision?.warning) response.warnings = [decision.warning];
  return { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', response };
}
