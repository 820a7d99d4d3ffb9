import { fromJSON, type ServiceDefinition } from '@grpc/proto-loader';

/**
 * `health.proto` beside this file as a protobufjs JSON descriptor. Embedding it
 * means no file is read at run time, so the service works from `src/` (tests),
 * from `dist/` and from a bundle alike. A test loads the `.proto` with
 * @grpc/proto-loader and checks that both give the same descriptors.
 */
const HEALTH_PROTO: Parameters<typeof fromJSON>[0] = {
  nested: {
    grpc: {
      nested: {
        health: {
          nested: {
            v1: {
              nested: {
                HealthCheckRequest: { fields: { service: { type: 'string', id: 1 } } },
                HealthCheckResponse: {
                  fields: { status: { type: 'ServingStatus', id: 1 } },
                  nested: { ServingStatus: { values: { UNKNOWN: 0, SERVING: 1, NOT_SERVING: 2, SERVICE_UNKNOWN: 3 } } },
                },
                Health: {
                  methods: {
                    Check: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse', comment: '' },
                    Watch: { requestType: 'HealthCheckRequest', responseType: 'HealthCheckResponse', responseStream: true, comment: '' },
                  },
                },
              },
            },
          },
        },
      },
    },
  },
};

export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Loading options: field names as in the proto, `service` defaults to `''`, statuses as enum names. */
export const HEALTH_LOADER_OPTIONS = { keepCase: true, defaults: true, enums: String } as const;

/**
 * The `grpc.health.v1.Health` service definition (Check, Watch), for a client
 * (`grpc.makeClientConstructor(healthDefinition, 'grpc.health.v1.Health')`) or
 * a server. Messages: `{ service: string }` in, `{ status: 'SERVING' | ... }` out.
 */
export const healthDefinition: ServiceDefinition = fromJSON(HEALTH_PROTO, HEALTH_LOADER_OPTIONS)[HEALTH_SERVICE] as ServiceDefinition;
