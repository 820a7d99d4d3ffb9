import * as grpc from '@grpc/grpc-js';
import { BrokerError } from '@ktransport/broker';
import type { PostReportReply, PostReportRequest, PostUserReportRequest } from '../proto.js';
import type { ReportRepository } from './report-repository.js';

type Call<Req> = grpc.ServerUnaryCall<Req, PostReportReply>;
type Callback = grpc.sendUnaryData<PostReportReply>;

/**
 * The gRPC face of the agent: each call publishes one report and answers once
 * the broker accepted it, so an OK reply means the report will be stored.
 */
export function reportService(repository: ReportRepository): grpc.UntypedServiceImplementation {
  return {
    PostReport: (call: Call<PostReportRequest>, callback: Callback) => {
      const { eventName, content, reportId } = call.request;
      reply(repository.postEvent({ eventName, content }, reportId || undefined), callback);
    },
    PostUserReport: (call: Call<PostUserReportRequest>, callback: Callback) => {
      const { userId, status, reportId } = call.request;
      reply(repository.postUser({ userId, status }, reportId || undefined), callback);
    },
  };
}

function reply(published: Promise<string>, callback: Callback): void {
  published.then(
    (reportId) => callback(null, { reportId }),
    (error: unknown) => {
      const retriable = error instanceof BrokerError ? error.retriable : true;
      callback({
        name: 'PublishFailed',
        message: `report not accepted by the broker: ${error instanceof Error ? error.message : String(error)}`,
        code: retriable ? grpc.status.UNAVAILABLE : grpc.status.INVALID_ARGUMENT,
      });
    },
  );
}
