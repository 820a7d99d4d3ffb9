import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';

/** report.proto, loaded the same way by the agent (server) and by clients (demo, tests). */
export const REPORT_PROTO = fileURLToPath(new URL('../proto/report.proto', import.meta.url));

export interface PostReportRequest {
  eventName: string;
  content: string;
  reportId?: string;
}
export interface PostUserReportRequest {
  userId: number;
  status: string;
  reportId?: string;
}
export interface PostReportReply {
  reportId: string;
}

type Unary<Req> = (request: Req, callback: (error: grpc.ServiceError | null, reply?: PostReportReply) => void) => grpc.ClientUnaryCall;

/** A typed client of ReportService. */
export interface ReportClient extends grpc.Client {
  PostReport: Unary<PostReportRequest>;
  PostUserReport: Unary<PostUserReportRequest>;
}

/** The ReportService definition (for the server) and a client constructor. */
export function loadReportService(): {
  definition: grpc.ServiceDefinition;
  Client: new (address: string, credentials: grpc.ChannelCredentials) => ReportClient;
} {
  const packageDefinition = protoLoader.loadSync(REPORT_PROTO, { longs: Number, defaults: true });
  const loaded = grpc.loadPackageDefinition(packageDefinition) as unknown as {
    report: { v1: { ReportService: grpc.ServiceClientConstructor } };
  };
  const ctor = loaded.report.v1.ReportService;
  return { definition: ctor.service, Client: ctor as unknown as new (address: string, credentials: grpc.ChannelCredentials) => ReportClient };
}
