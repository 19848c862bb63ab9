package plugin

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"time"

	"github.com/ironlb/ironlb/config"
	"github.com/ironlb/ironlb/internal/kubeclient"
	"github.com/spf13/cobra"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"
)

// options are the flags every subcommand shares.
type options struct {
	loading       *clientcmd.ClientConfigLoadingRules
	overrides     clientcmd.ConfigOverrides
	allNamespaces bool
	output        string
	class         config.Class
}

// NewCommand returns the kubectl-ironlb command tree. Output goes to the command's Out and
// ErrOrStderr (SetOut/SetErr in tests).
func NewCommand() *cobra.Command {
	o := &options{loading: clientcmd.NewDefaultClientConfigLoadingRules(), class: config.Class{Name: config.DefaultClassName}}
	root := &cobra.Command{
		Use:           "kubectl-ironlb",
		Annotations:   map[string]string{cobra.CommandDisplayNameAnnotation: "kubectl ironlb"},
		Short:         "Inspect ironlb: which Service has which IP, who announces it, and why not",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	f := root.PersistentFlags()
	f.StringVar(&o.loading.ExplicitPath, "kubeconfig", "", "path to the kubeconfig file")
	clientcmd.BindOverrideFlags(&o.overrides, f, clientcmd.RecommendedConfigOverrideFlags(""))
	f.StringVar(&o.class.Name, "load-balancer-class", o.class.Name, "the class ironlb's controller handles (its -load-balancer-class)")
	f.BoolVar(&o.class.Only, "only-load-balancer-class", false, "the controller handles only Services of that class (its -only-load-balancer-class)")

	status := &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Each LoadBalancer Service's IPs, pool, announcers, condition and last events",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, ns, err := o.load(cmd.Context(), len(args) == 0)
			if err != nil {
				return err
			}
			name := ""
			if len(args) == 1 {
				name = args[0]
			}
			list := Status(st, ns, name)
			if name != "" && len(list) == 0 {
				return fmt.Errorf("no LoadBalancer Service %s/%s", ns, name)
			}
			if o.output != "" {
				if name != "" {
					return o.print(cmd.OutOrStdout(), list[0])
				}
				return o.print(cmd.OutOrStdout(), list)
			}
			if name != "" {
				return WriteStatusDetail(cmd.OutOrStdout(), list[0], time.Now())
			}
			return WriteStatusTable(cmd.OutOrStdout(), list, time.Now())
		},
	}
	status.Flags().BoolVarP(&o.allNamespaces, "all-namespaces", "A", false, "all namespaces")

	why := &cobra.Command{
		Use:   "why SERVICE",
		Short: "Why a Service is pending or partly served, and what to change",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			st, ns, err := o.load(cmd.Context(), false)
			if err != nil {
				return err
			}
			ex, err := Why(st, ns, args[0])
			if err != nil {
				return err
			}
			if o.output != "" {
				return o.print(cmd.OutOrStdout(), ex)
			}
			return WriteWhy(cmd.OutOrStdout(), ex)
		},
	}

	pools := &cobra.Command{
		Use:   "pools",
		Short: "Usage of each IPPool by family, with the Services holding its addresses",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			o.allNamespaces = true
			st, _, err := o.load(cmd.Context(), true)
			if err != nil {
				return err
			}
			if o.output != "" {
				return o.print(cmd.OutOrStdout(), Pools(st))
			}
			return WritePools(cmd.OutOrStdout(), Pools(st))
		},
	}
	for _, c := range []*cobra.Command{status, why, pools} {
		c.Flags().StringVarP(&o.output, "output", "o", "", "json or yaml (default: text)")
		root.AddCommand(c)
	}
	root.AddCommand(newMigrateCommand(o))
	return root
}

// load lists the cluster's objects. It returns the namespace in effect: the context's (or -n),
// or "" with -A when allowAll.
func (o *options) load(ctx context.Context, allowAll bool) (*State, string, error) {
	if o.output != "" && o.output != "json" && o.output != "yaml" {
		return nil, "", fmt.Errorf("--output %q: use json or yaml", o.output)
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(o.loading, &o.overrides)
	ns, _, err := cc.Namespace()
	if err != nil {
		return nil, "", fmt.Errorf("reading the namespace from the kubeconfig: %w", err)
	}
	if allowAll && o.allNamespaces {
		ns = ""
	}
	cfg, err := cc.ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("client configuration: %w", err)
	}
	// kubectl's own limits: the plugin reads a few lists, once.
	kubectl := kubeclient.Limits{QPS: 50, Burst: 300}
	clients, err := kubeclient.New(cfg, kubectl, kubectl)
	if err != nil {
		return nil, "", err
	}
	if ctx == nil {
		ctx = context.Background()
	}
	st, err := Load(ctx, clients, o.class, ns)
	return st, ns, err
}

func (o *options) print(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the report: %w", err)
	}
	if o.output == "yaml" {
		if b, err = yaml.JSONToYAML(b); err != nil {
			return fmt.Errorf("encoding the report: %w", err)
		}
	} else {
		b = append(b, '\n')
	}
	_, err = w.Write(b)
	return err
}
