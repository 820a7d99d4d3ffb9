export { type AsyncApiOptions, asyncApiDocument } from './document.js';
export type { ServerInput } from './servers.js';
export { asyncApiYaml, toYaml } from './yaml.js';
export type {
  AsyncApiChannel,
  AsyncApiDocument,
  AsyncApiInfo,
  AsyncApiLocation,
  AsyncApiMessage,
  AsyncApiOperation,
  AsyncApiOperationReply,
  AsyncApiParameter,
  AsyncApiServer,
  Reference,
  SchemaObject,
} from './types.js';
